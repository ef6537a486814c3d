"""The two rules of the API that JSON Schema cannot state, as schemathesis hooks.

Used by tests/test_fuzz_api.py and by a schemathesis run from the command line against a real
server (README, "Checked with schemathesis"):

    SCHEMATHESIS_HOOKS=tests.schemathesis_hooks st run http://127.0.0.1:8000/openapi.json --checks all

A schema-valid request that breaks one of them is left out of the requests that must be accepted
(it is still sent, and must be refused with a 4xx, as the API does):

- no article id twice in one batch, derived ids included: `uniqueItems` compares whole objects,
  and an id derived from a URL or a text is no field of the request (test_api.py tests the 422);
- a chat's last user message must be a question /v1/search would take (a letter or a digit, at
  most CITESEARCH_MAX_QUERY_CHARS): JSON Schema cannot single out the last item of an array with
  a property (`contains` says "some"), and earlier user messages may be anything (test_answer.py
  tests the 422).
"""

from __future__ import annotations

from typing import Any

import schemathesis

from citesearch.api.schemas import ChatCompletionRequest, check_query
from citesearch.index.articles import ArticleInput, build_article, duplicate_id_problems


def unanswerable_chat(body: Any) -> bool:
    """A chat whose last user message is not a question citesearch can search for."""
    try:
        request = ChatCompletionRequest.model_validate(body)
        last = next(m for m in reversed(request.messages) if m.role == "user")
        check_query(last.text())
    except (ValueError, StopIteration):
        return True
    return False


def repeats_an_id(body: Any) -> bool:
    """A batch naming one article id twice (derived ids included)."""
    try:
        articles = [build_article(ArticleInput.model_validate(a)) for a in body["articles"]]
    except Exception:  # not a valid batch: the API refuses it for its own reasons
        return False
    return bool(duplicate_id_problems(articles))


@schemathesis.hook
def filter_case(context: Any, case: schemathesis.Case) -> bool:  # type: ignore[type-arg]
    """Keep every request but the schema-valid ones that break a rule the schema cannot state."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return True
    if case.method == "POST" and case.path == "/v1/chat/completions" and unanswerable_chat(case.body):
        return False
    return not (case.method == "POST" and case.path == "/v1/articles" and repeats_an_id(case.body))
