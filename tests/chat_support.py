"""Helpers for the chatbot tests: their articles, an in-process uvicorn server, the fake LLM process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

ROOT = Path(__file__).resolve().parent.parent


def articles() -> list[dict[str, Any]]:
    """The seed (Chinese title, English body) and three short articles in German, Spanish, Chinese."""
    title, _, body = (ROOT / "seeds" / "000_cb51183e942cda20.txt").read_text(encoding="utf-8").partition("\n")
    seed = {"id": "seed-h20", "title": title, "text": body, "source": "seed"}
    data = json.loads((ROOT / "tests" / "data" / "answers" / "articles.json").read_text(encoding="utf-8"))
    return [seed, *data]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def uvicorn_thread(app: FastAPI) -> Iterator[str]:
    """A real uvicorn server for `app` on a free loopback port, in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:  # poll the server's own flag, with a deadline
        assert thread.is_alive(), "uvicorn exited during start-up"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def fake_llm() -> Iterator[str]:
    """tests/fake_llm.py in its own process; yields its base URL (the API is under /v1)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_llm.py"), str(port)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "listening"
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
