"""Requests generated from the OpenAPI schema (schemathesis), checked with all its checks.

Schema-valid requests must be accepted and invalid ones refused with a 4xx; every status, header
and body must be the declared one (the error envelope included); OPTIONS and 405 must name the
path's methods. Three rules the schema cannot state are left out of the requests that must be
accepted: no NUL character in any string, and no article id twice in a batch, derived ids
included (both refused by the API, and tested in test_api.py); a chat whose last user message is
no question (tested in test_answer.py) is the third.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings

from citesearch.api.app import create_app
from citesearch.api.schemas import ChatCompletionRequest, check_query
from citesearch.api.settings import Settings
from citesearch.index.articles import ArticleInput, build_article, duplicate_id_problems
from tests.conftest import shared_embedder

# schemathesis starts the app's lifespan once (when it reads /openapi.json) and keeps it running.
# A small batch limit (declared in the schema) keeps the largest generated batch quick to embed.
_DATA = Path(tempfile.mkdtemp(prefix="citesearch-fuzz-"))
app = create_app(Settings(data_dir=_DATA, max_batch=16), embedder_factory=lambda _m: shared_embedder())
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
schema.config.checks.update(included_check_names=["all"])
schema.config.generation.update(allow_x00=False)


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _unanswerable_chat(body: Any) -> bool:
    """A chat whose last user message is not a question citesearch can search for (blank, no letter
    or digit, too long): refused with a 422, as /v1/search refuses such a query (test_answer.py)."""
    try:
        request = ChatCompletionRequest.model_validate(body)
        last = next(m for m in reversed(request.messages) if m.role == "user")
        check_query(last.text())
    except (ValueError, StopIteration):
        return True
    return False


def _repeats_an_id(body: Any) -> bool:
    try:
        articles = [build_article(ArticleInput.model_validate(a)) for a in body["articles"]]
    except Exception:  # not a valid batch: the API refuses it for its own reasons
        return False
    return bool(duplicate_id_problems(articles))


@schema.hook
def filter_case(context: Any, case: schemathesis.Case) -> bool:  # type: ignore[type-arg]
    """Keep every request but the schema-valid ones that break a rule the schema cannot state."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return True
    if _has_nul(case.body) or _has_nul(case.query) or _has_nul(case.path_parameters):
        return False
    if case.method == "POST" and case.path == "/v1/chat/completions" and _unanswerable_chat(case.body):
        return False
    return not (case.method == "POST" and case.path == "/v1/articles" and _repeats_an_id(case.body))


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_response_conforms_to_the_schema(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
    case.call_and_validate()
