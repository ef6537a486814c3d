"""Requests generated from the OpenAPI schema (schemathesis), checked with all its checks.

Schema-valid requests must be accepted and invalid ones refused with a 4xx; every status, header
and body must be the declared one (the error envelope included); OPTIONS and 405 must name the
path's methods. Strings may hold NUL characters: the schema says where they are refused (every
stored string of an article). The two rules JSON Schema cannot state are the hooks of
tests/schemathesis_hooks.py, which a command-line run against a real server loads too.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

import tests.schemathesis_hooks  # noqa: F401 - registers the hooks
from citesearch.api.app import create_app
from citesearch.api.settings import Settings
from tests.conftest import shared_embedder

# schemathesis starts the app's lifespan once (when it reads /openapi.json) and keeps it running.
# A small batch limit (declared in the schema) keeps the largest generated batch quick to embed.
_DATA = Path(tempfile.mkdtemp(prefix="citesearch-fuzz-"))
app = create_app(Settings(data_dir=_DATA, max_batch=16), embedder_factory=lambda _m: shared_embedder())
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
schema.config.checks.update(included_check_names=["all"])


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_response_conforms_to_the_schema(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
    case.call_and_validate()
