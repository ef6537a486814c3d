"""Request and response schemas, named by role."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from citesearch.index.articles import ArticleInput


class ArticleIn(ArticleInput):
    """An article as clients send it (the domain's validated input model)."""


class ArticlesIn(BaseModel):
    """A batch of articles to create or update."""

    model_config = ConfigDict(extra="forbid")
    articles: list[ArticleIn] = Field(min_length=1, max_length=1000)


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
    """A page of articles and the cursor of the next one."""

    articles: list[ArticleSummary]
    next_cursor: str | None


class SearchFilters(BaseModel):
    """Restrictions applied inside retrieval, so top_k fills whenever enough passages match."""

    model_config = ConfigDict(extra="forbid")
    language: list[str] = Field(default_factory=list, max_length=50)
    source: list[str] = Field(default_factory=list, max_length=100)
    article_id: list[str] = Field(default_factory=list, max_length=1000)
    published_after: dt.date | None = Field(None, description="On or after this day (UTC).")
    published_before: dt.date | None = Field(None, description="On or before this day (UTC).")


class SearchRequest(BaseModel):
    """A question and how to answer it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"query": "英伟达的H20芯片有后门吗？", "top_k": 3}]},
    )
    query: str = Field(min_length=1, max_length=2000)
    top_k: int = Field(5, ge=1, le=50)
    mode: Literal["hybrid", "dense", "lexical"] = "hybrid"
    filters: SearchFilters = Field(default_factory=SearchFilters)
    offset: int = Field(0, ge=0, le=1000, description="Results to skip (pagination).")
    per_article: int = Field(1, ge=1, le=20, description="Most passages returned from one article.")
    query_language: str | None = Field(
        None, max_length=35, description="The question's language (BCP-47) if known; detected otherwise."
    )
    recency_half_life_days: float | None = Field(
        None, gt=0, le=36500, description="Boost recent news: score halves its bonus every N days."
    )
    context: bool = Field(False, description="Also return a numbered context block and citations for an LLM.")
    highlight: Literal["lexical", "semantic"] = Field(
        "lexical",
        description="How the highlight sentence is chosen: shared terms (fast) or the sentence whose "
        "embedding is nearest the question (better across languages; one extra model call).",
    )


class HighlightOut(BaseModel):
    """The sentence(s) of the passage that best answer the question, with offsets into the article."""

    text: str
    char_start: int
    char_end: int


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
    model: str | None = Field(None, max_length=1000, description="Rebuild with this model instead.")


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


class Stats(BaseModel):
    """Corpus and index figures."""

    articles: int
    passages: int
    index_vectors: int
    generation: int
    model: str
    dim: int
    index_kind: str
    languages: dict[str, int]
