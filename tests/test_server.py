"""Against a real uvicorn process started by `citesearch serve`: a smoke test, slow clients, and the
cap on connections per client address (raw sockets, as a slow or greedy client would behave)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from citesearch.api.app import create_app
from citesearch.api.server import SlowClientProtocol, uvicorn_config
from citesearch.api.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def wait_for(cond: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    """Poll `cond` until true (a deadline, not a sleep as synchronisation)."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """`citesearch serve` on a free loopback port, started and ready (its own log says so, no timer);
    its log is collected in `lines` by a thread, so that a full pipe never blocks it."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "citesearch.api.cli",
                "serve",
                "--data-dir",
                str(data_dir),
                "--port",
                str(self.port),
            ],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), "CITESEARCH_LOG_LEVEL": "info", **env},
            cwd=ROOT,
        )
        self.lines: list[str] = []
        assert self.proc.stderr is not None
        for line in self.proc.stderr:  # model loaded; socket listening
            self.lines.append(line)
            text = "".join(self.lines)
            if "citesearch ready" in text and "Uvicorn running" in text:
                break
        else:
            self.proc.wait()
            raise AssertionError("server exited early:\n" + "".join(self.lines))
        threading.Thread(target=self.lines.extend, args=(self.proc.stderr,), daemon=True).start()

    def kill9(self) -> None:
        """kill -9, and wait until it is gone."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), if it still runs."""
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`citesearch serve`; yields its base URL.

    Deadlines of 1 s for heads and bodies, each body byte buying 0.1 s more (10 bytes/s); at most 8
    connections, 4 from one address.
    """
    serve = ServeProcess(
        tmp_path_factory.mktemp("serve") / "d",
        CITESEARCH_HEADER_TIMEOUT_S="1",
        CITESEARCH_TIMEOUT_KEEP_ALIVE_S="2",
        CITESEARCH_BODY_TIMEOUT_S="1",
        CITESEARCH_BODY_MIN_BYTES_PER_S="10",
        CITESEARCH_MAX_CONNECTIONS="8",
        CITESEARCH_MAX_CONNECTIONS_PER_CLIENT="4",
    )
    try:
        yield serve.base
    finally:
        serve.stop()


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


def connect(server: str, source: str = "127.0.0.1") -> socket.socket:
    """A raw connection to the server from the loopback address `source` (any of 127.0.0.0/8)."""
    host, port = server.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30, source_address=(source, 0))


def post_head(length: int, path: str = "/v1/search") -> bytes:
    """The head of a JSON POST announcing a body of `length` bytes (the server closes after answering)."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()


GET_HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def test_a_request_body_that_stalls_is_cut_off(server: str) -> None:
    # The outside run's slow body: a head announcing 100,000 bytes, then the start of the JSON.
    with connect(server) as sock:
        sock.sendall(post_head(100_000) + b'{"query": "')
        assert read_until_closed(sock) == b""


def test_a_slow_body_that_keeps_the_minimum_rate_is_served(server: str) -> None:
    body = json.dumps({"query": "Which budget line did the council approve?", "top_k": 1}).encode().ljust(160)
    with connect(server) as slow:
        slow.sendall(post_head(len(body)) + body[:150])  # 150 bytes at 10 bytes/s: 15 s more than 1 s
        with connect(server) as stalled:  # its head came after slow's, so its 1 s is over after slow's
            stalled.sendall(post_head(10))
            assert read_until_closed(stalled) == b""
        slow.sendall(body[150:])
        reply = read_until_closed(slow)
    assert reply.startswith(b"HTTP/1.1 200 OK"), reply[:200]


def test_one_address_cannot_take_the_connection_budget(server: str) -> None:
    # Four slow bodies from 127.0.0.1 (200 bytes each: 21 s to finish) hold that address's share.
    held = [connect(server) for _ in range(4)]
    try:
        for sock in held:
            sock.sendall(post_head(1000) + b"{" + b" " * 199)
        for _ in range(4):  # more from that address: refused at once, and never counted in the 8
            with connect(server) as extra:
                extra.sendall(GET_HEALTHZ)
                reply = read_until_closed(extra)
            head, _, body = reply.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 429"), reply[:200]
            assert json.loads(body)["error"]["code"] == "too_many_requests"
        with connect(server, source="127.0.0.2") as other:  # another client still gets in
            other.sendall(GET_HEALTHZ)
            assert read_until_closed(other).startswith(b"HTTP/1.1 200 OK")
    finally:
        for sock in held:
            sock.close()

    def address_served_again() -> bool:  # once the server has seen the four close
        with connect(server) as sock:
            sock.sendall(GET_HEALTHZ)
            return read_until_closed(sock).startswith(b"HTTP/1.1 200 OK")

    wait_for(address_served_again, what="127.0.0.1 to be served again")


def test_serve_applies_the_timeouts_and_the_connection_caps(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        header_timeout_s=2.5,
        body_timeout_s=4,
        body_min_bytes_per_s=300,
        timeout_keep_alive_s=7,
        max_connections=33,
        max_connections_per_client=5,
        log_level="warning",
    )
    config = uvicorn_config(create_app(settings), settings, "127.0.0.1", 8123)
    assert config.timeout_keep_alive == 7 and config.limit_concurrency == 33
    assert isinstance(config.http, type) and issubclass(config.http, SlowClientProtocol)
    assert (config.http.header_timeout, config.http.body_timeout, config.http.body_min_rate) == (2.5, 4, 300)
    assert config.http.max_per_client == 5
    other = uvicorn_config(create_app(settings), settings, "127.0.0.1", 8124).http
    assert isinstance(other, type) and issubclass(other, SlowClientProtocol)
    assert other.open_per_client is not config.http.open_per_client  # each server counts its own
