"""The `citesearch` command in-process (typer's runner), on a real data directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from citesearch.api.cli import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def test_ingest_search_stats_delete(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    res = runner.invoke(app, ["ingest", str(ROOT / "seeds"), "--data-dir", data])
    assert res.exit_code == 0, res.output
    assert "created 1" in res.output
    again = runner.invoke(app, ["ingest", str(ROOT / "seeds"), "--data-dir", data])
    assert "unchanged 1" in again.output

    found = runner.invoke(
        app, ["search", "英伟达的H20芯片有后门吗？", "--json", "--top-k", "1", "--data-dir", data]
    )
    assert found.exit_code == 0, found.output
    body = json.loads(found.stdout)
    assert body["results"][0]["article_id"] == "000_cb51183e942cda20"

    stats = runner.invoke(app, ["stats", "--data-dir", data])
    assert stats.exit_code == 0 and "passages" in stats.output

    gone = runner.invoke(app, ["delete", "000_cb51183e942cda20", "--data-dir", data])
    assert gone.exit_code == 0, gone.output
    missing = runner.invoke(app, ["delete", "000_cb51183e942cda20", "--data-dir", data])
    assert missing.exit_code == 1


def test_ingest_reports_bad_files_and_goes_on(tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["ingest", str(ROOT / "tests" / "data" / "sources"), "--data-dir", str(tmp_path / "d")]
    )
    assert res.exit_code == 1  # some fixture files are broken on purpose
    assert "error" in res.output and "created" in res.output
    created = int(res.output.split("created ")[1].split(",")[0])
    assert created > 0


def test_reindex_from_the_cli(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    runner.invoke(app, ["ingest", str(ROOT / "seeds"), "--data-dir", data])
    res = runner.invoke(app, ["reindex", "--data-dir", data])
    assert res.exit_code == 0, res.output
    assert "generation 2 is serving" in res.output


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m citesearch.api.cli ARGS` in a fresh process, as the installed script runs `main`."""
    return subprocess.run(
        [sys.executable, "-m", "citesearch.api.cli", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_placeholder_key_stops_serve_with_one_line_and_no_secret(tmp_path: Path) -> None:
    res = run_cli(
        "serve",
        "--data-dir",
        str(tmp_path / "d"),
        "--port",
        "1",
        env={"CITESEARCH_API_KEY": "changeme"},
        cwd=tmp_path,
    )
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        "error: CITESEARCH_API_KEY: use a real secret of at least 16 characters, not a placeholder"
    ]
    assert "changeme" not in res.stderr + res.stdout


def test_bad_settings_name_the_variable_never_the_value(tmp_path: Path) -> None:
    secret = "short-secret"
    res = run_cli(
        "stats",
        env={"CITESEARCH_READ_KEY": secret, "CITESEARCH_PORT": "eighty", "CITESEARCH_CORS_ORIGINS": "[]"},
        cwd=tmp_path,
    )
    assert res.returncode == 2 and len(res.stderr.splitlines()) == 1, res.stderr
    assert "CITESEARCH_READ_KEY:" in res.stderr and "CITESEARCH_PORT:" in res.stderr
    assert secret not in res.stderr and "eighty" not in res.stderr
    unparsable = run_cli("stats", env={"CITESEARCH_CORS_ORIGINS": "not-json-token"}, cwd=tmp_path)
    assert unparsable.returncode == 2
    assert unparsable.stderr == "error: CITESEARCH_CORS_ORIGINS: cannot be parsed\n"


def test_search_refuses_what_the_api_refuses_before_loading_anything(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    for query, why in (("   ", "the query is blank"), ("🙂\u200b", "the query has no letter or digit")):
        res = run_cli("search", query, "--data-dir", data, env={}, cwd=tmp_path)
        assert res.returncode == 2 and res.stderr == f"error: query: {why}\n", res.stderr
    long = run_cli(
        "search", "x" * 11, "--data-dir", data, env={"CITESEARCH_MAX_QUERY_CHARS": "10"}, cwd=tmp_path
    )
    assert long.returncode == 2 and long.stderr == "error: query: the query is longer than 10 characters\n"
    assert not (tmp_path / "d").exists()  # refused before the model and the index were opened
