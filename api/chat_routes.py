"""Routes for chatbots: POST /v1/answer, and the OpenAI-compatible /v1/chat/completions and /v1/models.

The search behind an answer runs before any response starts, so a bad question or a server still
loading gets its 4xx/503 with the error envelope even when `stream` is true; only then does the
answer stream as server-sent events.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from citesearch.api.answer import Answerer, Event, retrieve
from citesearch.api.deps import ReadAuth, ServiceDep, SettingsDep
from citesearch.api.errors import ApiError, error_body, error_responses
from citesearch.api.llm import Message
from citesearch.api.schemas import (
    AnswerCitation,
    AnswerRequest,
    AnswerResponse,
    ChatChoice,
    ChatChoiceMessage,
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessage,
    ModelList,
    ModelOut,
)

log = logging.getLogger("citesearch.api")
router = APIRouter()

MODEL_ID = "citesearch"
MODEL_CREATED = 1767225600  # 2026-01-01: a fixed date, so the listing never changes
_SSE = {"description": "With `stream: true`: server-sent events", "content": {"text/event-stream": {}}}


def _sse(data: str, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data}\n\n".encode()


def _streaming(chunks: Iterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        chunks,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _guarded(events: Iterator[Event], render: Any) -> Iterator[bytes]:
    """Rendered events; an unexpected failure mid-stream ends it with an `error` event (the log has it)."""
    try:
        for event in events:
            yield from render(event)
    except Exception:
        log.exception("answer stream failed")
        yield _sse(json.dumps(error_body("internal_error", "the answer failed midway")), "error")


# ---- /v1/answer -----------------------------------------------------------------------------------


@router.post(
    "/v1/answer",
    tags=["answers"],
    response_model=AnswerResponse,
    dependencies=[ReadAuth],
    responses={200: _SSE, **error_responses(400, 401, 413, 422, 503)},
)
def answer(
    req: AnswerRequest, request: Request, service: ServiceDep, settings: SettingsDep
) -> AnswerResponse | StreamingResponse:
    """An answer with [n] citations from the top passages; `stream: true` sends `delta` events
    (`{"text"}`) and a last `done` event holding the whole response."""
    retrieved = retrieve(service, req)
    answerer = Answerer(settings, str(request.base_url))
    if not req.stream:
        return answerer.answer(retrieved)

    def render(event: Event) -> Iterator[bytes]:
        if event[0] == "delta":
            yield _sse(json.dumps({"text": event[1]}, ensure_ascii=False), "delta")
        else:
            yield _sse(event[1].model_dump_json(), "done")

    return _streaming(_guarded(answerer.events(retrieved), render))


# ---- OpenAI-compatible chat -----------------------------------------------------------------------


@router.get("/v1/models", tags=["chat"], dependencies=[ReadAuth], responses=error_responses(401))
def models() -> ModelList:
    """The one model, `citesearch`, as OpenAI clients list models."""
    return ModelList(data=[ModelOut(id=MODEL_ID, created=MODEL_CREATED, owned_by="citesearch")])


def _conversation(messages: list[ChatMessage]) -> tuple[int, str, list[Message]]:
    """The last user message (its index and text) and the user/assistant turns before it."""
    last = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), None)
    if last is None:
        detail = {"loc": ["body", "messages"], "message": "no user message", "type": "missing_user_message"}
        raise ApiError(422, "validation_error", "the conversation has no user message", [detail])
    history = [
        {"role": m.role, "content": m.text()}
        for m in messages[:last]
        if m.role in ("user", "assistant") and m.text().strip()
    ]
    return last, messages[last].text(), history


def _answer_request(body: ChatCompletionRequest) -> tuple[AnswerRequest, list[Message]]:
    if body.model != MODEL_ID:
        raise ApiError(
            404, "not_found", f"unknown model {body.model[:100]!r}: this server offers {MODEL_ID!r}"
        )
    index, question, history = _conversation(body.messages)
    try:
        req = AnswerRequest.model_validate(
            {"query": question, "top_k": body.top_k, "filters": body.filters, "stream": body.stream}
        )
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", "messages", index, "content")} for e in exc.errors()]
        raise RequestValidationError(errors) from None
    return req, history


def footnotes(citations: list[AnswerCitation]) -> str:
    """The citations as footnotes under the answer: "[1] Title, https://...", one per label."""
    lines = [f"{c.label} {c.title + ', ' if c.title else ''}{c.url}" for c in citations]
    return "\n\n" + "\n".join(lines) if lines else ""


def _chunk(cid: str, created: int, delta: dict[str, str], **extra: Any) -> bytes:
    body = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": MODEL_ID,
        "choices": [{"index": 0, "delta": delta, "finish_reason": extra.pop("finish_reason", None)}],
        **extra,
    }
    return _sse(json.dumps(body, ensure_ascii=False))


@router.post(
    "/v1/chat/completions",
    tags=["chat"],
    response_model=ChatCompletion,
    dependencies=[ReadAuth],
    responses={200: _SSE, **error_responses(400, 401, 404, 413, 422, 503)},
)
def chat_completions(
    body: ChatCompletionRequest, request: Request, service: ServiceDep, settings: SettingsDep
) -> ChatCompletion | StreamingResponse:
    """OpenAI-compatible: the last user message answered as POST /v1/answer does, citations as
    footnotes in the content and structured in `citations`; `stream: true` ends with `data: [DONE]`."""
    req, history = _answer_request(body)
    earlier = next((m["content"] for m in reversed(history) if m["role"] == "user"), None)
    retrieved = retrieve(service, req, earlier)
    answerer = Answerer(settings, str(request.base_url), framed=True)
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if not req.stream:
        done = answerer.answer(retrieved, history)
        content = done.answer + footnotes(done.citations)
        return ChatCompletion(
            id=cid,
            created=created,
            model=MODEL_ID,
            choices=[ChatChoice(message=ChatChoiceMessage(content=content))],
            citations=done.citations,
        )

    def render(event: Event) -> Iterator[bytes]:
        if event[0] == "delta":
            yield _chunk(cid, created, {"content": event[1]})
            return
        done = event[1]
        notes = footnotes(done.citations)
        if notes:
            yield _chunk(cid, created, {"content": notes})
        citations = [c.model_dump() for c in done.citations]
        yield _chunk(cid, created, {}, finish_reason="stop", citations=citations)
        yield _sse("[DONE]")

    def chunks() -> Iterator[bytes]:
        yield _chunk(cid, created, {"role": "assistant", "content": ""})
        yield from _guarded(answerer.events(retrieved, history), render)

    return _streaming(chunks())
