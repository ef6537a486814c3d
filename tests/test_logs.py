"""No password in any log line or error: the database URL is checked at start-up, and the driver's
own error messages (which quote what they could not parse) are redacted on their way to the log."""

from __future__ import annotations

import io
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import psycopg_pool
import pytest

from citesearch.api.logs import RedactingFilter, protect_logs, settings_secrets
from citesearch.api.settings import Settings
from tests.test_cli import run_cli
from tests.test_server import ROOT, free_port, wait_for

SECRET = "S3cret-pw-42"


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (f"mysql://admin:{SECRET}@db.example/news", "the scheme must be postgresql:// or postgres://"),
        (f"postgresql://admin:{SECRET}%zz@db.example/news", "cannot be parsed as a PostgreSQL URL"),
        (f"postgresql://admin:{SECRET}@db.example/news?{SECRET}=1", "cannot be parsed as a PostgreSQL URL"),
        (f"postgres://admin:{SECRET}@db.example:54321x/news", "the port must be a number"),
        (f"admin:{SECRET}@db.example", "the scheme must be postgresql:// or postgres://"),
    ],
)
def test_a_database_url_libpq_cannot_use_stops_serve_with_one_line(
    tmp_path: Path, url: str, why: str
) -> None:
    res = run_cli(
        "serve", "--data-dir", str(tmp_path / "d"), env={"CITESEARCH_DATABASE_URL": url}, cwd=tmp_path
    )
    assert res.returncode == 2
    [line] = res.stderr.splitlines()
    assert line.startswith(f"error: CITESEARCH_DATABASE_URL: {why}"), line
    assert SECRET not in res.stderr + res.stdout
    assert not (tmp_path / "d").exists()  # refused before anything was opened


def test_postgres_urls_libpq_reads_are_accepted() -> None:
    for url in (
        "postgresql://user:p%40ss@db.example:5432/news",
        "postgres://db.example/news?sslmode=require",
        "postgresql:///news",
        "postgresql://u@[::1]:5433,[::1]:5434/news",
    ):
        assert Settings(database_url=url).database_url == url
    assert Settings(database_url="").database_url is None


def test_settings_never_show_a_secret() -> None:
    settings = Settings(database_url=f"postgresql://admin:{SECRET}@db/news", api_key="k" * 8 + SECRET)
    assert SECRET not in repr(settings) and SECRET not in str(settings)
    assert set(settings_secrets(settings)) == {SECRET, "k" * 8 + SECRET}


@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    """What the root logger writes, through a handler protected like the commands' (configure_logging)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    protect_logs(settings_secrets(Settings(database_url=f"postgresql://admin:{SECRET}@127.0.0.1/news")))
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        protect_logs([])


def test_driver_errors_are_logged_without_the_password(log_text: io.StringIO) -> None:
    log = logging.getLogger("citesearch.test")
    port = closed_port()
    # libpq quotes what it cannot parse: the outside run's `mysql://` URL, a bad percent-encoding.
    for url in (
        f"mysql://admin:{SECRET}@127.0.0.1:{port}/db",
        f"postgresql://admin:{SECRET}%zz@127.0.0.1/db",
    ):
        try:
            psycopg.connect(url, connect_timeout=2)
        except psycopg.ProgrammingError as exc:
            assert SECRET in str(exc)  # the driver's message does hold it
            log.exception("connecting failed")
            log.warning("connecting failed: %s", exc)
        else:
            raise AssertionError("the driver accepted a URL it cannot parse")
    # psycopg's pool logs each failed attempt on its own (the once-a-second line of the outside run).
    pool = psycopg_pool.ConnectionPool(f"mysql://admin:{SECRET}@127.0.0.1:{port}/db", min_size=1, open=False)
    pool.open(wait=False)
    try:
        wait_for(lambda: "error connecting" in log_text.getvalue(), what="the pool to log its failure")
    finally:
        pool.close()
    text = log_text.getvalue()
    assert SECRET not in text
    assert 'missing "=" after "mysql://admin:***@127.0.0.1' in text  # still says what is wrong
    assert 'invalid percent-encoded token: "***%zz"' in text
    assert "Traceback" in text and "psycopg.ProgrammingError" in text


def test_the_filter_masks_passwords_in_urls_connection_strings_and_arguments() -> None:
    filt = RedactingFilter(["k3y-of-the-llm"])
    record = logging.LogRecord(
        "x",
        logging.INFO,
        __file__,
        1,
        "to %s with %r (password=%s) key %s",
        ("postgres://u:p@ss@h/db", "host=h password='a b' port=1", "xyz", "Bearer k3y-of-the-llm"),
        None,
    )
    assert filt.filter(record)
    # (an unquoted connection-string value runs to the next space: the ")" goes with it)
    assert (
        record.getMessage()
        == "to postgres://u:***@h/db with 'host=h password=*** port=1' (password=*** key Bearer ***"
    )
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "%s %s", ("GET", "/?q=https://a:b@c"), None)
    assert filt.filter(plain) and plain.args == ("GET", "/?q=https://a:***@c")  # formatters that read args


@pytest.mark.slow
def test_serve_with_an_unreachable_database_says_so_without_the_password(tmp_path: Path) -> None:
    port = free_port()
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
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "CITESEARCH_LOG_LEVEL": "info",
            "CITESEARCH_DATABASE_URL": f"postgresql://admin:{SECRET}@127.0.0.1:{closed_port()}/news",
            "CITESEARCH_CLUSTER_TIMEOUT_S": "1",
        },
        cwd=tmp_path,
    )
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the server's own log says when loading gave up
            lines.append(line)
            if "start-up failed" in "".join(lines) and "Uvicorn running" in "".join(lines):
                break
        else:
            raise AssertionError("server exited early:\n" + "".join(lines))
        drain = threading.Thread(target=lines.extend, args=(proc.stderr,), daemon=True)
        drain.start()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            ready, stats = http.get("/readyz"), http.get("/v1/stats")
        assert ready.status_code == 503 and "StoreUnavailableError" in ready.json()["error"]["message"]
        assert stats.status_code == 503
        assert SECRET not in ready.text + stats.text
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    drain.join(timeout=60)
    text = "".join(lines)
    assert "Traceback" in text and SECRET not in text
