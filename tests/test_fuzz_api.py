"""Property-based requests generated from the OpenAPI schema (schemathesis): never a 5xx, one error shape."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from citesearch.api.app import create_app
from citesearch.api.settings import Settings
from tests.conftest import shared_embedder

# schemathesis starts the app's lifespan once (when it reads /openapi.json) and keeps it running.
_DATA = Path(tempfile.mkdtemp(prefix="citesearch-fuzz-"))
app = create_app(
    Settings(data_dir=_DATA, max_body_bytes=256 * 1024), embedder_factory=lambda _m: shared_embedder()
)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_makes_a_server_error(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
    response = case.call()
    assert response.status_code < 500, (case.method, case.path, response.text)
    content_type = (response.headers.get("content-type") or [""])[0]
    if response.status_code >= 400 and content_type.startswith("application/json"):
        body = response.json()
        assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"])
