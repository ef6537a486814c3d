"""Against a real uvicorn process started by `citesearch serve`: a smoke test and slow clients."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from citesearch.api.app import create_app
from citesearch.api.server import HeaderTimeoutProtocol, uvicorn_config
from citesearch.api.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`citesearch serve` on a free loopback port with a 1 s header timeout; yields its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CITESEARCH_LOG_LEVEL": "info",
        "CITESEARCH_HEADER_TIMEOUT_S": "1",
        "CITESEARCH_TIMEOUT_KEEP_ALIVE_S": "2",
        "CITESEARCH_MAX_CONNECTIONS": "64",
    }
    data = tmp_path_factory.mktemp("serve") / "d"
    proc = subprocess.Popen(
        [sys.executable, "-m", "citesearch.api.cli", "serve", "--data-dir", str(data), "--port", str(port)],
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
        # Keep reading its log, so that a full pipe never blocks the server.
        threading.Thread(target=seen.extend, args=(proc.stderr,), daemon=True).start()
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_ingest_and_search_over_loopback(server: str) -> None:
    with httpx.Client(base_url=server, timeout=60) as http:
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


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (30 s at most, else a timeout error)."""
    sock.settimeout(30)
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received


def test_a_client_that_stops_halfway_through_the_request_line_is_cut_off(server: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"GET /healthz HT")
        assert read_until_closed(sock) == b""


def test_a_client_that_never_finishes_its_headers_is_cut_off(server: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert read_until_closed(sock) == b""


def test_a_silent_connection_is_cut_off(server: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        assert read_until_closed(sock) == b""


def test_a_keep_alive_connection_is_answered_then_cut_off_when_the_next_head_stalls(server: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HT")
        received = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 200 OK") and received.count(b"HTTP/1.1") == 1


def test_serve_applies_the_timeouts_and_the_connection_cap(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        header_timeout_s=2.5,
        timeout_keep_alive_s=7,
        max_connections=33,
        log_level="warning",
    )
    config = uvicorn_config(create_app(settings), settings, "127.0.0.1", 8123)
    assert config.timeout_keep_alive == 7 and config.limit_concurrency == 33
    assert isinstance(config.http, type) and issubclass(config.http, HeaderTimeoutProtocol)
    assert config.http.header_timeout == 2.5
