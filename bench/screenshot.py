"""The README's screenshot of the search page: `python -m bench.screenshot [--out docs/search-page.png]`.

Does what `make run` does (ingest seeds/ into a fresh data directory, `citesearch serve`), asks the
seed question in Debian's Chromium through Playwright, and saves the page. Chinese glyphs need a CJK
font on the machine (`apt-get install fonts-wqy-microhei` or `fonts-noto-cjk`).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from urllib.parse import quote

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "英伟达的H20芯片有后门吗？"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "citesearch.api.cli", *args]


def _serve(data: Path, port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CITESEARCH_LOG_LEVEL": "info"}
    proc = subprocess.Popen(
        _cli("serve", "--data-dir", str(data), "--port", str(port)),
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stderr is not None
    seen: list[str] = []
    for line in proc.stderr:  # the log says when the model is loaded and the socket listens
        seen.append(line)
        if "citesearch ready" in "".join(seen) and "Uvicorn running" in "".join(seen):
            threading.Thread(target=seen.extend, args=(proc.stderr,), daemon=True).start()
            return proc
    raise SystemExit("the server did not start:\n" + "".join(seen))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "search-page.png")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--width", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="citesearch-shot-") as tmp:
        data = Path(tmp) / "data"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run(
            _cli("ingest", str(ROOT / "seeds"), "--data-dir", str(data)), check=True, env=env, cwd=ROOT
        )
        port = _free_port()
        proc = _serve(data, port)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=args.chromium, headless=True)
                page = browser.new_page(viewport={"width": args.width, "height": 700})
                page.goto(f"http://127.0.0.1:{port}/?q={quote(QUESTION)}")
                page.locator("#results li.result").first.wait_for()
                page.locator("#admin-stats").filter(has_text="articles").wait_for()
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
