"""The `citesearch` command in-process (typer's runner), on a real data directory."""

from __future__ import annotations

import json
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
