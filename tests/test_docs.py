"""The README documents every setting, route and CLI command."""

from __future__ import annotations

from pathlib import Path

from citesearch.api.app import create_app
from citesearch.api.cli import app as cli_app
from citesearch.api.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_readme() -> None:
    missing = [
        f"CITESEARCH_{n.upper()}" for n in Settings.model_fields if f"CITESEARCH_{n.upper()}" not in README
    ]
    assert not missing, f"undocumented settings: {missing}"


def test_every_route_is_in_the_readme() -> None:
    app = create_app(Settings())
    paths = {getattr(r, "path", "") for r in app.routes} - {
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
    }
    missing = sorted(
        p for p in paths if f"`{p.replace('{article_id}', '{id}').replace('{job_id}', '{id}')}" not in README
    )
    assert not missing, f"undocumented routes: {missing}"


def test_every_cli_command_is_in_the_readme() -> None:
    names = [c.name or "" for c in cli_app.registered_commands] + ["model prepare"]
    missing = [n for n in names if f"citesearch {n}" not in README]
    assert not missing, f"undocumented commands: {missing}"
