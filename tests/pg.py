"""A throwaway PostgreSQL cluster for the tests: initdb in a temp dir, pg_ctl start, loopback only.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user (`runuser`)
in a directory handed to it. Without the binaries the tests that need it are skipped, loudly.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BIN_DIRS = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")


def pg_bin() -> Path | None:
    """The directory holding initdb and pg_ctl, or None."""
    for d in (os.environ.get("CITESEARCH_TEST_PG_BIN"), *PG_BIN_DIRS):
        if d and (Path(d) / "pg_ctl").exists():
            return Path(d)
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    """One throwaway cluster: `url(db)` for a fresh database, `stop()`/`start()` for outage tests."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        self.base = Path(tempfile.mkdtemp(prefix="citesearch-pg-"))
        self.data = self.base / "data"
        self.port = _free_port()
        self._dbs = 0
        if self.as_root:
            self.base.chmod(0o755)
            shutil.chown(self.base, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        # fsync off: nothing here must survive the machine; commits stay synchronous, so an immediate
        # stop (the outage tests) loses no committed transaction.
        conf = (
            f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = ''\n"
            "fsync = off\nfull_page_writes = off\nmax_connections = 200\n"
        )
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(conf)
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bindir / tool), *args]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, cwd=self.base)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.base / "log"), "-w", "-t", "60", "start")

    def stop(self) -> None:
        """Stop the server at once (connections are cut, like a crash of the database host)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def url(self, name: str | None = None) -> str:
        """A URL of a new, empty database."""
        import psycopg

        self._dbs += 1
        db = name or f"t{self._dbs}"
        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}"')
            conn.execute(f'CREATE DATABASE "{db}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def destroy(self) -> None:
        """Stop the server if running and remove its directory."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg() -> Iterator[PgCluster]:
    """The session's PostgreSQL, or a loud skip when its binaries are absent."""
    bindir = pg_bin()
    if bindir is None:
        pytest.skip(
            "POSTGRESQL BINARIES NOT FOUND (initdb/pg_ctl): the cluster tests did not run; "
            "install postgresql or set CITESEARCH_TEST_PG_BIN"
        )
    cluster = PgCluster(bindir)
    try:
        yield cluster
    finally:
        cluster.destroy()
