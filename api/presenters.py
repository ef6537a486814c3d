"""Domain results to response models, and requests to domain queries: the one place fields are copied.

Routes and the CLI build every response here, so a field added to the domain shows up in one
function (and mypy names it if a name changes).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

from citesearch.api.jobs import Job
from citesearch.api.schemas import (
    ArticleList,
    ArticleOut,
    ArticleSummary,
    ArticlesWritten,
    Citation,
    ClusterStats,
    HighlightOut,
    JobOut,
    PassageOut,
    SearchFilters,
    SearchRequest,
    SearchResponse,
    SearchResult,
    Stats,
    WriteResultOut,
)
from citesearch.index.articles import validate_article_id
from citesearch.index.search import Hit, SearchOutcome, SearchQuery
from citesearch.index.service import ServiceStats, WriteResult
from citesearch.index.store import ArticleRow, Filters, PassageRow

# ---- search -------------------------------------------------------------------------------------


def _day_start(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


def search_filters(f: SearchFilters) -> Filters:
    """The domain's filters: days become epoch seconds (the whole of `published_before` counts)."""
    return Filters(
        languages=tuple(f.language),
        sources=tuple(f.source),
        article_ids=tuple(f.article_id),
        published_after=_day_start(f.published_after) if f.published_after else None,
        published_before=_day_start(f.published_before) + 86400 if f.published_before else None,
    )


def search_query(req: SearchRequest) -> SearchQuery:
    """The domain query for a validated request."""
    return SearchQuery(
        text=req.query,
        top_k=req.top_k,
        mode=req.mode,
        filters=search_filters(req.filters),
        offset=req.offset,
        per_article=req.per_article,
        language=req.query_language,
        recency_half_life_days=req.recency_half_life_days,
        highlight=req.highlight,
    )


def search_result(hit: Hit, label: str) -> SearchResult:
    """One ranked passage with its citation label."""
    p = hit.passage
    return SearchResult(
        rank=hit.rank,
        score=hit.score,
        passage_id=p.id,
        text=p.text,
        article_id=p.article_id,
        title=p.title,
        url=p.url,
        source=p.source,
        published_at=p.published_at,
        language=p.language,
        char_start=p.char_start,
        char_end=p.char_end,
        highlight=HighlightOut(
            text=hit.highlight.text,
            char_start=hit.highlight.char_start,
            char_end=hit.highlight.char_end,
            score=hit.highlight.score,
            probability=hit.highlight.probability,
            answers=hit.highlight.answers,
        ),
        citation=label,
        dense_score=hit.dense_score,
        lexical_score=hit.lexical_score,
    )


def citation(passage: PassageRow, label: str) -> Citation:
    """The citation for one passage of the context block."""
    return Citation(
        label=label,
        article_id=passage.article_id,
        passage_id=passage.id,
        title=passage.title,
        source=passage.source,
        published_at=passage.published_at,
        url=passage.url,
        char_start=passage.char_start,
        char_end=passage.char_end,
    )


def context_block(hits: Sequence[Hit]) -> tuple[str, list[Citation]]:
    """A numbered context block for an LLM prompt ("[1] title, source, date, url" then the text)
    and the citations matching its labels."""
    parts: list[str] = []
    citations: list[Citation] = []
    for i, h in enumerate(hits, start=1):
        p = h.passage
        head = ", ".join(x for x in (p.title, p.source, (p.published_at or "")[:10], p.url) if x)
        parts.append(f"[{i}] {head}\n{p.text}")
        citations.append(citation(p, f"[{i}]"))
    return "\n\n".join(parts), citations


def search_response(req: SearchRequest, outcome: SearchOutcome) -> SearchResponse:
    """The response to a search: results labelled [1], [2]..., the next page, the context on request."""
    results = [search_result(h, f"[{i}]") for i, h in enumerate(outcome.hits, start=1)]
    resp = SearchResponse(
        query=outcome.query,
        results=results,
        took_ms=outcome.took_ms,
        generation=outcome.generation,
        query_language=outcome.query_language,
        next_offset=req.offset + len(results) if outcome.has_more else None,
    )
    if req.context:
        resp.context, resp.citations = context_block(outcome.hits)
    return resp


# ---- articles -----------------------------------------------------------------------------------


def articles_written(results: Sequence[WriteResult], generation: int) -> ArticlesWritten:
    """What a batch write did, article by article."""
    return ArticlesWritten(
        results=[WriteResultOut(id=r.id, status=r.status, passages=r.passages) for r in results],
        generation=generation,
    )


def passage_out(p: PassageRow) -> PassageOut:
    """A passage of an article with its offsets."""
    return PassageOut(id=p.id, text=p.text, char_start=p.char_start, char_end=p.char_end, n_tokens=p.n_tokens)


def article_out(row: ArticleRow, passages: Sequence[PassageRow]) -> ArticleOut:
    """An article with its passages."""
    return ArticleOut(
        id=row.id,
        title=row.title,
        text=row.text,
        url=row.url,
        source=row.source,
        published_at=row.published_at,
        language=row.language,
        metadata=row.metadata,
        content_hash=row.content_hash,
        created_at=row.created_at,
        updated_at=row.updated_at,
        passages=[passage_out(p) for p in passages],
    )


def article_summary(row: ArticleRow) -> ArticleSummary:
    """An article in a listing (no text)."""
    return ArticleSummary(
        id=row.id,
        title=row.title,
        url=row.url,
        source=row.source,
        published_at=row.published_at,
        language=row.language,
        updated_at=row.updated_at,
    )


# Cursors are the hex of the last id listed. Every id character is ASCII from a fixed set, so the
# pattern below admits exactly the encodings of valid ids ("." and ".." spelled out as excluded).
_HEX_ID_CHAR = "(?:2[146-9a-e]|3[0-9abd]|4[0-9a-f]|5[0-9af]|6[1-9a-f]|7[0-9ae])"
_HEX_ID_CHAR_NOT_DOT = "(?:2[146-9a-d]|3[0-9abd]|4[0-9a-f]|5[0-9af]|6[1-9a-f]|7[0-9ae])"
CURSOR_PATTERN = (
    f"^(?:{_HEX_ID_CHAR_NOT_DOT}{_HEX_ID_CHAR}{{0,255}}|2e{_HEX_ID_CHAR_NOT_DOT}{_HEX_ID_CHAR}{{0,254}}"
    f"|2e2e{_HEX_ID_CHAR}{{1,254}})$"
)


def encode_cursor(article_id: str) -> str:
    """The opaque cursor of the page after `article_id`."""
    return article_id.encode("ascii").hex()


def decode_cursor(cursor: str) -> str:
    """The last id of the previous page; ValueError for anything `encode_cursor` did not make."""
    try:
        article_id = bytes.fromhex(cursor).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        raise ValueError("invalid cursor: pass back the next_cursor of the previous page") from None
    if encode_cursor(article_id) != cursor:
        raise ValueError("invalid cursor: pass back the next_cursor of the previous page")
    try:
        return validate_article_id(article_id)
    except ValueError:
        raise ValueError("invalid cursor: pass back the next_cursor of the previous page") from None


def article_list(rows: Sequence[ArticleRow], last_id: str | None) -> ArticleList:
    """A page of articles and the cursor of the next page (None at the end)."""
    return ArticleList(
        articles=[article_summary(r) for r in rows],
        next_cursor=encode_cursor(last_id) if last_id is not None else None,
    )


# ---- jobs and stats -----------------------------------------------------------------------------


def job_out(job: Job) -> JobOut:
    """A job's status, progress and public error."""
    return JobOut(
        job_id=job.id,
        kind=job.kind,
        status=job.status,
        progress=round(job.progress, 4),
        message=job.message,
        error=job.error,
    )


def stats(s: ServiceStats) -> Stats:
    """Corpus and index figures."""
    return Stats(
        articles=s.articles,
        passages=s.passages,
        sentences=s.sentences,
        index_vectors=s.index_vectors,
        generation=s.generation,
        model=s.model,
        dim=s.dim,
        index_kind=s.index_kind,
        languages=dict(s.languages),
        cluster=None if s.cluster is None else ClusterStats(**dataclasses.asdict(s.cluster)),
        engine=s.engine,
        query_threads=s.query_threads,
        query_shapes=list(s.query_shapes),
        stale_passages=s.stale_passages,
        answer_engine=s.answer_engine,
    )
