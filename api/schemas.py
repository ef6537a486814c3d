"""Request and response schemas, named by role.

Request models are strict about numbers and booleans: in a JSON body `"5"`, `true` or `1.5` is not
a `top_k`. A question must hold a letter or a digit and fit the configured `max_query_chars`,
checked here so that the API and the CLI refuse the same questions with the same message.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    model_validator,
)

from citesearch.index.articles import (
    LANGUAGE_PATTERN,
    LETTER_OR_DIGIT_PATTERN,
    ArticleInput,
    check_language_tag,
    has_letter_or_digit,
)

MAX_QUERY_CHARS = 2000
"""The longest question any configuration accepts (`Settings.max_query_chars` may lower it)."""
_max_query_chars: ContextVar[int] = ContextVar("citesearch_max_query_chars", default=MAX_QUERY_CHARS)


@contextmanager
def query_limit(max_chars: int) -> Iterator[None]:
    """Validate the SearchRequests built inside this block against `max_chars`.

    The app binds its setting around every request (`app.RequestLimitsMiddleware`), the CLI around
    its one question; pydantic offers no other way to hand a setting to a validator run by FastAPI.
    """
    token = _max_query_chars.set(max_chars)
    try:
        yield
    finally:
        _max_query_chars.reset(token)


def _utf8(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"contains an unpaired surrogate at position {exc.start}") from None
    return value


def _integral(value: object) -> object:
    """A float with no fraction is the integer JSON Schema says it is (5.0 == 5); nothing else converts."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


JsonInt = Annotated[int, Field(strict=True), BeforeValidator(_integral)]
"""An integer from JSON: 5 or 5.0, never "5", true or 1.5."""
Utf8Str = Annotated[str, AfterValidator(_utf8)]
"""A string that can be stored and searched (no unpaired surrogate, which JSON escapes can carry)."""

_FULL_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _full_date(value: object) -> object:
    """Only "YYYY-MM-DD" (RFC 3339 full-date, as the schema says): no numbers, no datetimes."""
    if isinstance(value, dt.date) or (isinstance(value, str) and _FULL_DATE.fullmatch(value)):
        return value
    raise ValueError("expected a date as YYYY-MM-DD")


Day = Annotated[dt.date, BeforeValidator(_full_date)]
"""A calendar day, given as "YYYY-MM-DD"."""

LanguageTag = Annotated[
    str,
    Field(max_length=35, json_schema_extra={"pattern": LANGUAGE_PATTERN}),
    AfterValidator(check_language_tag),
]
"""A BCP-47 language tag of the shapes articles take (`LANGUAGE_PATTERN`), in canonical form: a
filter or a question language that no article can have is a 422, not an empty answer."""


def _known_language(value: str | None) -> str | None:
    """A question's language; "und" (undetermined) is no language: detect it instead."""
    return None if value is None or value == "und" else value


def check_query(value: str) -> str:
    """The question itself when it can be answered; ValueError saying why not otherwise."""
    limit = _max_query_chars.get()
    if len(value) > limit:
        raise ValueError(f"the query is longer than {limit} characters")
    if not value.strip():
        raise ValueError("the query is blank")
    if not has_letter_or_digit(value):
        raise ValueError("the query has no letter or digit")
    return _utf8(value)


QUERY_FIELD_SCHEMA: dict[str, Any] = {"pattern": LETTER_OR_DIGIT_PATTERN}


class ArticleIn(ArticleInput):
    """An article as clients send it (the domain's validated input model)."""


class ArticlesIn(BaseModel):
    """A batch of articles to create or update; no id twice (derived ids included)."""

    model_config = ConfigDict(extra="forbid")
    articles: list[ArticleIn] = Field(min_length=1, max_length=1000, json_schema_extra={"uniqueItems": True})


class WriteResultOut(BaseModel):
    """What happened to one article."""

    id: str
    status: Literal["created", "updated", "unchanged"]
    passages: int


class ArticlesWritten(BaseModel):
    """Response to POST /v1/articles."""

    results: list[WriteResultOut]
    generation: int


class PassageOut(BaseModel):
    """A passage of an article with its exact offsets."""

    id: int
    text: str
    char_start: int
    char_end: int
    n_tokens: int


class ArticleOut(BaseModel):
    """An article with its passages."""

    id: str
    title: str | None
    text: str
    url: str | None
    source: str | None
    published_at: str | None
    language: str | None
    metadata: dict[str, Any]
    content_hash: str
    created_at: str
    updated_at: str
    passages: list[PassageOut]


class ArticleSummary(BaseModel):
    """An article in a listing (no text)."""

    id: str
    title: str | None
    url: str | None
    source: str | None
    published_at: str | None
    language: str | None
    updated_at: str


class ArticleList(BaseModel):
    """A page of articles and the opaque cursor of the next one."""

    articles: list[ArticleSummary]
    next_cursor: str | None


class SearchFilters(BaseModel):
    """Restrictions applied inside retrieval, so top_k fills whenever enough passages match."""

    model_config = ConfigDict(extra="forbid")
    language: list[LanguageTag] = Field(default_factory=list, max_length=50)
    source: list[Utf8Str] = Field(default_factory=list, max_length=100)
    article_id: list[Utf8Str] = Field(default_factory=list, max_length=1000)
    published_after: Day | None = Field(None, description="On or after this day (UTC).")
    published_before: Day | None = Field(None, description="On or before this day (UTC).")


Question = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        description="The question, in any language: at least one letter or digit.",
        json_schema_extra=QUERY_FIELD_SCHEMA,
    ),
    AfterValidator(check_query),
]
"""A question of a request body (search, answer): its limits, its schema and its check, written once."""


class SearchRequest(BaseModel):
    """A question and how to answer it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"query": "英伟达的H20芯片有后门吗？", "top_k": 3}]},
    )
    query: Question
    top_k: JsonInt = Field(5, ge=1, le=50)
    mode: Literal["hybrid", "dense", "lexical"] = "hybrid"
    filters: SearchFilters = Field(default_factory=SearchFilters)
    offset: JsonInt = Field(0, ge=0, le=1000, description="Results to skip (pagination).")
    per_article: JsonInt = Field(1, ge=1, le=20, description="Most passages returned from one article.")
    query_language: Annotated[LanguageTag | None, AfterValidator(_known_language)] = Field(
        None, description="The question's language (BCP-47) if known; detected otherwise."
    )
    recency_half_life_days: StrictFloat | None = Field(
        None, gt=0, le=36500, description="Boost recent news: score halves its bonus every N days."
    )
    context: StrictBool = Field(
        False, description="Also return a numbered context block and citations for an LLM."
    )
    highlight: Literal["lexical", "semantic"] = Field(
        "semantic",
        description="How the highlight sentence is chosen: by meaning (default: the answer model reads the "
        "question with the sentences of the first hits, the others' sentence nearest by cosine; works "
        "across languages) or by shared terms.",
    )


class HighlightOut(BaseModel):
    """The sentence(s) of the passage that best answer the question, with offsets into the article."""

    text: str
    char_start: int
    char_end: int
    score: float | None = Field(
        default=None,
        description="Cosine of the sentence with the question (semantic highlights; null for lexical ones).",
    )
    probability: float | None = Field(
        default=None,
        description="The answer model's calibrated probability that this sentence answers the question "
        "(null when the model did not read this passage: see CITESEARCH_ANSWER_HITS).",
    )
    answers: bool = Field(
        default=False,
        description="True when the answer model read it and its probability reaches the model's threshold: "
        "the sentence answers the question.",
    )


class SearchResult(BaseModel):
    """One ranked, citable passage; article.text[char_start:char_end] == text."""

    rank: int
    score: float
    passage_id: int
    text: str
    article_id: str
    title: str | None
    url: str | None
    source: str | None
    published_at: str | None
    language: str
    char_start: int
    char_end: int
    highlight: HighlightOut
    citation: str
    dense_score: float | None
    lexical_score: float | None


class Citation(BaseModel):
    """A citation matching a label of the context block."""

    label: str
    article_id: str
    passage_id: int
    title: str | None
    source: str | None
    published_at: str | None
    url: str | None
    char_start: int
    char_end: int


class SearchResponse(BaseModel):
    """Ranked passages with their citations."""

    query: str
    results: list[SearchResult]
    took_ms: float
    generation: int
    query_language: str | None
    next_offset: int | None
    context: str | None = None
    citations: list[Citation] | None = None


class ReindexRequest(BaseModel):
    """Optional body of POST /v1/reindex."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(
        None,
        max_length=1000,
        description="Rebuild with this model instead: the name of a directory under the models "
        "directory, or exactly the configured CITESEARCH_MODEL.",
    )


class JobAccepted(BaseModel):
    """Response to POST /v1/reindex."""

    job_id: str


class JobOut(BaseModel):
    """Status of a background job."""

    job_id: str
    kind: str
    status: Literal["queued", "running", "succeeded", "failed"]
    progress: float
    message: str
    error: str | None = None


class ClusterStats(BaseModel):
    """Where a replica stands against the cluster's change log."""

    applied_seq: int = Field(description="Last change-log entry applied to this replica's index.")
    head_seq: int = Field(description="Last entry of the change log (as last seen when unreachable).")
    lag_entries: int = Field(description="Entries committed but not yet applied here.")
    lag_seconds: float | None = Field(
        description="Age of the oldest entry not applied here (0 when caught up; null when unreachable)."
    )
    writable: bool = Field(description="Whether the database answers, so writes are accepted.")


class Stats(BaseModel):
    """Corpus and index figures."""

    articles: int
    passages: int
    sentences: int
    index_vectors: int
    generation: int
    model: str
    dim: int
    index_kind: str
    languages: dict[str, int]
    cluster: ClusterStats | None = None
    engine: str = ""
    """Inference engine and precision of the model, e.g. `openvino-bf16` (see README, Inference engine)."""
    query_threads: int | None = None
    """Threads a question's forward pass runs on now: measured while serving, the cheaper of one and all cores."""
    query_shapes: list[tuple[int, int]] = Field(default_factory=list)
    """[tokens, threads] of the fixed-shape copies of the model that lone questions run on now
    (OpenVINO; `CITESEARCH_QUERY_SHAPES`): a copy is compiled after its second question."""
    stale_passages: int = Field(
        0,
        description="Passages stored for generations that neither serve nor are being built: 0 in a "
        "healthy store (a reindex cut short between its switch and its drop leaves some; start-up "
        "repair removes them).",
    )
    answer_engine: str | None = Field(
        None,
        description="Engine and precision of the answer-sentence model (e.g. `openvino-bf16`); null "
        "when it is off (`CITESEARCH_ANSWER_MODEL=off`) or not prepared (highlights by cosine, unmarked).",
    )


class ErrorBody(BaseModel):
    """What went wrong: a stable code, a message for people, and details (field errors, ids)."""

    code: str
    message: str
    details: list[dict[str, Any]]


class ErrorOut(BaseModel):
    """The one shape of every error response."""

    error: ErrorBody


# ---- answers, chat and MCP (api/answer.py, api/chat_routes.py, api/mcp.py) ----------------------


class AnswerRequest(BaseModel):
    """A question to answer in prose with [n] citations (extractive, or an LLM's when one is configured)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"query": "英伟达的H20芯片有后门吗？", "top_k": 5}]},
    )
    query: Question
    top_k: JsonInt = Field(5, ge=1, le=20, description="Passages the answer may draw on.")
    filters: SearchFilters = Field(default_factory=SearchFilters)
    query_language: Annotated[LanguageTag | None, AfterValidator(_known_language)] = Field(
        None, description="The question's language (BCP-47) if known; detected otherwise."
    )
    mode: Literal["auto", "extractive"] = Field(
        "auto", description="`auto`: the LLM when CITESEARCH_LLM_URL is set, else extractive."
    )
    stream: StrictBool = Field(False, description="Answer as server-sent events (delta, then done).")


class AnswerCitation(BaseModel):
    """What a label of the answer cites: article.text[char_start:char_end] == text."""

    label: str
    article_id: str
    passage_id: int
    title: str | None
    url: str
    source: str | None
    published_at: str | None
    char_start: int
    char_end: int
    text: str


class AnswerResponse(BaseModel):
    """An answer whose every label is in `citations`, with the passages it was drawn from."""

    query: str
    answer: str
    answered: bool = Field(
        description="False when the passages did not answer well enough (the answer says so)."
    )
    mode: Literal["extractive", "generated"]
    citations: list[AnswerCitation]
    results: list[SearchResult]
    query_language: str | None
    generation: int
    took_ms: float
    llm_fallback: bool = Field(
        False, description="True when the LLM failed or timed out: the answer is extractive."
    )
    llm_error: str | None = Field(
        None, description="Why the LLM was not used or stopped: timeout, unavailable..."
    )
    dropped_labels: list[str] = Field(
        default_factory=list, description="Labels the LLM cited that were not in its context: removed."
    )


class ChatContentPart(BaseModel):
    """A part of a multi-part message; only text parts are read."""

    model_config = ConfigDict(extra="ignore")
    type: str = Field(max_length=100)
    text: Utf8Str | None = Field(None, max_length=100_000)


_USER_MESSAGE_HAS_CONTENT: dict[str, Any] = {
    "if": {"properties": {"role": {"const": "user"}}, "required": ["role"]},
    "then": {"required": ["content"], "properties": {"content": {"not": {"type": "null"}}}},
}
"""The schema's word for `ChatMessage._user_content`: a user message has content, as in OpenAI's API."""


class ChatMessage(BaseModel):
    """An OpenAI chat message (fields other than role and content are ignored). A user message must
    have its content (a string or parts); an assistant's or a tool's may be null, as OpenAI's."""

    model_config = ConfigDict(extra="ignore", json_schema_extra=_USER_MESSAGE_HAS_CONTENT)
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Utf8Str | list[ChatContentPart] | None = Field(None, max_length=100_000)

    @model_validator(mode="after")
    def _user_content(self) -> ChatMessage:
        if self.role == "user" and self.content is None:
            raise ValueError("a user message needs its content: a string or a list of parts")
        return self

    def text(self) -> str:
        """The message's text (text parts joined)."""
        if isinstance(self.content, list):
            return "\n".join(p.text for p in self.content if p.type == "text" and p.text)
        return self.content or ""


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completion request; the last user message is the question. Unknown fields
    (temperature, max_tokens...) are accepted and ignored, as chat UIs send them."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {"model": "citesearch", "messages": [{"role": "user", "content": "Has the H20 a backdoor?"}]}
            ]
        },
    )
    model: str = Field(max_length=200, json_schema_extra={"enum": ["citesearch"]})
    messages: list[ChatMessage] = Field(
        min_length=1,
        max_length=200,
        description="The conversation; the last user message is the question.",
        json_schema_extra={"contains": {"type": "object", "properties": {"role": {"const": "user"}}}},
    )
    stream: StrictBool = False
    top_k: JsonInt = Field(5, ge=1, le=20, description="citesearch: passages the answer may draw on.")
    filters: SearchFilters = Field(default_factory=SearchFilters)


class ChatChoiceMessage(BaseModel):
    """The assistant's message."""

    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    """The one choice of a completion."""

    index: int = 0
    message: ChatChoiceMessage
    finish_reason: Literal["stop"] = "stop"


class ChatUsage(BaseModel):
    """Token counts (not measured: zeros, as OpenAI clients expect the field)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatCompletion(BaseModel):
    """OpenAI's chat completion, plus `citations` (structured) and `citesearch` (the whole answer)."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: ChatUsage = Field(default_factory=ChatUsage)
    citations: list[AnswerCitation]


class ModelOut(BaseModel):
    """A model in GET /v1/models."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    """OpenAI's model listing."""

    object: Literal["list"] = "list"
    data: list[ModelOut]


class ToolSearchResult(BaseModel):
    """A result of the MCP `search` tool: `id` is what `fetch` takes."""

    id: str
    title: str
    url: str
    text: str
    highlight: str
    answers: bool = Field(
        description="The answer model says `highlight` answers the query (only the first results are read)."
    )
    score: float
    char_start: int
    char_end: int
    source: str | None
    published_at: str | None
    language: str


class ToolSearchOut(BaseModel):
    """What the MCP `search` tool returns."""

    results: list[ToolSearchResult]


class ToolDocument(BaseModel):
    """What the MCP `fetch` tool returns: a whole article."""

    id: str
    title: str
    text: str
    url: str
    metadata: dict[str, Any]
