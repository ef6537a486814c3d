"""Smoke test against a real uvicorn process started by `citesearch serve`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_ingest_and_search_over_loopback(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CITESEARCH_LOG_LEVEL": "info"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "citesearch.api.cli",
            "serve",
            "--data-dir",
            str(tmp_path / "d"),
            "--port",
            str(port),
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert proc.stderr is not None
        seen: list[str] = []
        # Wait on the server's own log lines (model loaded; socket listening), not on a timer.
        for line in proc.stderr:
            seen.append(line)
            text = "".join(seen)
            if "citesearch ready" in text and "Uvicorn running" in text:
                break
        else:
            raise AssertionError("server exited early:\n" + "".join(seen))
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=60) as http:
            assert http.get("/healthz").json() == {"status": "ok"}
            assert http.get("/readyz").status_code == 200
            assert http.get("/v1/stats").json()["articles"] == 0  # no implicit seeding
            title, _, body = (ROOT / "seeds" / "000_cb51183e942cda20.txt").read_text().partition("\n")
            r = http.post("/v1/articles", json={"articles": [{"id": "seed", "title": title, "text": body}]})
            assert r.status_code == 200, r.text
            res = http.post("/v1/search", json={"query": "英伟达的H20芯片有后门吗？"}).json()
            assert res["results"][0]["article_id"] == "seed"
            bad = http.post("/v1/search", content=b"[", headers={"content-type": "application/json"})
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "malformed_json"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
