"""Routes: parse, call the domain, map the result. Sync handlers run in the threadpool, off the event loop."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from citesearch.api.deps import JobsDep, ReadAuth, ServiceDep, SettingsDep, StateDep, WriteAuth
from citesearch.api.errors import ApiError
from citesearch.api.metrics import Metrics
from citesearch.api.schemas import (
    ArticleList,
    ArticleOut,
    ArticlesIn,
    ArticleSummary,
    ArticlesWritten,
    Citation,
    HighlightOut,
    JobAccepted,
    JobOut,
    PassageOut,
    ReindexRequest,
    SearchFilters,
    SearchRequest,
    SearchResponse,
    SearchResult,
    Stats,
    WriteResultOut,
)
from citesearch.index.jobs import Job
from citesearch.index.search import Hit, SearchQuery
from citesearch.index.store import Filters

router = APIRouter()


def context_block(hits: list[Hit]) -> tuple[str, list[dict[str, object]]]:
    """A numbered context block for an LLM prompt and the matching citation list."""
    parts: list[str] = []
    citations: list[dict[str, object]] = []
    for i, h in enumerate(hits, start=1):
        p = h.passage
        head = ", ".join(x for x in (p.title, p.source, (p.published_at or "")[:10], p.url) if x)
        parts.append(f"[{i}] {head}\n{p.text}")
        citations.append(
            {
                "label": f"[{i}]",
                "article_id": p.article_id,
                "passage_id": p.id,
                "title": p.title,
                "source": p.source,
                "published_at": p.published_at,
                "url": p.url,
                "char_start": p.char_start,
                "char_end": p.char_end,
            }
        )
    return "\n\n".join(parts), citations


# ---- health -------------------------------------------------------------------------------------
@router.get("/healthz", tags=["health"])
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", tags=["health"], responses={503: {"description": "Still loading"}})
def readyz(state: StateDep) -> dict[str, str]:
    """200 only once the model and the index are loaded."""
    if state.service is None:
        msg = f"failed to start: {state.load_error}" if state.load_error else "loading"
        raise ApiError(503, "not_ready", msg)
    return {"status": "ready"}


@router.get("/metrics", tags=["health"], response_class=PlainTextResponse)
def metrics(state: StateDep) -> Response:
    """Prometheus text: requests and latency by route, index size."""

    def refresh(m: Metrics) -> None:
        if state.service is not None:
            s = state.service.stats()
            m.vectors.set(s.index_vectors)
            m.passages.set(s.passages)
            m.articles.set(s.articles)

    return Response(state.metrics.render(refresh), media_type=CONTENT_TYPE_LATEST)


# ---- search -------------------------------------------------------------------------------------
def _filters(f: SearchFilters) -> Filters:
    def day_ts(d: dt.date) -> float:
        return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()

    return Filters(
        languages=tuple(f.language),
        sources=tuple(f.source),
        article_ids=tuple(f.article_id),
        published_after=day_ts(f.published_after) if f.published_after else None,
        published_before=day_ts(f.published_before) + 86400 if f.published_before else None,
    )


def _search(service: ServiceDep, settings: SettingsDep, req: SearchRequest) -> SearchResponse:
    if len(req.query) > settings.max_query_chars:
        raise ApiError(422, "validation_error", f"query is longer than {settings.max_query_chars} characters")
    if not req.query.strip():
        raise ApiError(422, "validation_error", "query is blank")
    outcome = service.search(
        SearchQuery(
            text=req.query,
            top_k=req.top_k,
            mode=req.mode,
            filters=_filters(req.filters),
            offset=req.offset,
            per_article=req.per_article,
            language=req.query_language,
            recency_half_life_days=req.recency_half_life_days,
            highlight=req.highlight,
        ),
    )
    results = [
        SearchResult(
            rank=h.rank,
            score=h.score,
            passage_id=h.passage.id,
            text=h.passage.text,
            article_id=h.passage.article_id,
            title=h.passage.title,
            url=h.passage.url,
            source=h.passage.source,
            published_at=h.passage.published_at,
            language=h.passage.language,
            char_start=h.passage.char_start,
            char_end=h.passage.char_end,
            highlight=HighlightOut(
                text=h.highlight.text, char_start=h.highlight.char_start, char_end=h.highlight.char_end
            ),
            citation=f"[{i}]",
            dense_score=h.dense_score,
            lexical_score=h.lexical_score,
        )
        for i, h in enumerate(outcome.hits, start=1)
    ]
    resp = SearchResponse(
        query=outcome.query,
        results=results,
        took_ms=outcome.took_ms,
        generation=outcome.generation,
        query_language=outcome.query_language,
        next_offset=req.offset + len(results) if outcome.has_more else None,
    )
    if req.context:
        block, cites = context_block(outcome.hits)
        resp.context = block
        resp.citations = [Citation.model_validate(c) for c in cites]
    return resp


@router.post("/v1/search", tags=["search"], dependencies=[ReadAuth])
def search_post(req: SearchRequest, service: ServiceDep, settings: SettingsDep) -> SearchResponse:
    """Ranked, cited passages for a question in any language."""
    return _search(service, settings, req)


@router.get("/v1/search", tags=["search"], dependencies=[ReadAuth])
def search_get(
    service: ServiceDep,
    settings: SettingsDep,
    q: Annotated[str, Query(min_length=1, max_length=2000)],
    top_k: Annotated[int, Query(ge=1, le=50)] = 5,
    mode: Annotated[str, Query(pattern="^(hybrid|dense|lexical)$")] = "hybrid",
    offset: Annotated[int, Query(ge=0, le=1000)] = 0,
    language: Annotated[list[str] | None, Query(max_length=50)] = None,
    source: Annotated[list[str] | None, Query(max_length=100)] = None,
    published_after: dt.date | None = None,
    published_before: dt.date | None = None,
    context: bool = False,
    highlight: Annotated[str, Query(pattern="^(lexical|semantic)$")] = "lexical",
) -> SearchResponse:
    """The same search as POST, from query parameters."""
    req = SearchRequest.model_validate(
        {
            "query": q,
            "top_k": top_k,
            "mode": mode,
            "offset": offset,
            "context": context,
            "highlight": highlight,
            "filters": {
                "language": language or [],
                "source": source or [],
                "published_after": published_after,
                "published_before": published_before,
            },
        }
    )
    return _search(service, settings, req)


# ---- articles -----------------------------------------------------------------------------------
@router.post("/v1/articles", tags=["articles"], dependencies=[WriteAuth])
def post_articles(body: ArticlesIn, service: ServiceDep, settings: SettingsDep) -> ArticlesWritten:
    """Create or update articles; they are searchable when the response returns."""
    if len(body.articles) > settings.max_batch:
        raise ApiError(422, "validation_error", f"at most {settings.max_batch} articles per request")
    results = service.upsert(body.articles)
    return ArticlesWritten(
        results=[WriteResultOut(id=r.id, status=r.status, passages=r.passages) for r in results],
        generation=service.state.generation,
    )


@router.get("/v1/articles", tags=["articles"], dependencies=[ReadAuth])
def list_articles(
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=256)] = None,
) -> ArticleList:
    """Articles in id order; pass `next_cursor` back as `cursor` for the next page."""
    rows, nxt = service.list_articles(limit, cursor)
    return ArticleList(
        articles=[
            ArticleSummary(
                id=r.id,
                title=r.title,
                url=r.url,
                source=r.source,
                published_at=r.published_at,
                language=r.language,
                updated_at=r.updated_at,
            )
            for r in rows
        ],
        next_cursor=nxt,
    )


@router.get("/v1/articles/{article_id}", tags=["articles"], dependencies=[ReadAuth])
def get_article(article_id: str, service: ServiceDep) -> ArticleOut:
    """An article with its passages and their offsets."""
    row, passages = service.get_article(article_id)
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
        passages=[
            PassageOut(
                id=p.id, text=p.text, char_start=p.char_start, char_end=p.char_end, n_tokens=p.n_tokens
            )
            for p in passages
        ],
    )


@router.delete("/v1/articles/{article_id}", tags=["articles"], status_code=204, dependencies=[WriteAuth])
def delete_article(article_id: str, service: ServiceDep) -> Response:
    """Delete an article; gone from search when the response returns."""
    service.delete(article_id)
    return Response(status_code=204)


# ---- reindex and jobs ---------------------------------------------------------------------------
def _job_out(job: Job) -> JobOut:
    return JobOut(
        job_id=job.id,
        kind=job.kind,
        status=job.status,
        progress=round(job.progress, 4),
        message=job.message,
        error=job.error,
    )


@router.post("/v1/reindex", tags=["jobs"], status_code=202, dependencies=[WriteAuth])
def reindex(
    request: Request, service: ServiceDep, jobs: JobsDep, body: ReindexRequest | None = None
) -> JobAccepted:
    """Rebuild every passage and vector in a new generation while search keeps answering."""
    active = jobs.active()
    if active is not None:
        raise ApiError(409, "conflict", "a reindex is already running", [{"job_id": active.id}])
    factory = request.app.state.embedder_factory
    model = body.model if body else None

    def work(progress: object) -> object:
        embedder = factory(model) if model else None
        return service.reindex(embedder, progress)  # type: ignore[arg-type]

    job = jobs.submit("reindex", work)
    return JobAccepted(job_id=job.id)


@router.get("/v1/jobs/{job_id}", tags=["jobs"], dependencies=[ReadAuth])
def get_job(job_id: str, jobs: JobsDep) -> JobOut:
    """Status and progress of a background job."""
    job = jobs.get(job_id)
    if job is None:
        raise ApiError(404, "not_found", f"job {job_id!r} not found")
    return _job_out(job)


@router.get("/v1/stats", tags=["health"], dependencies=[ReadAuth])
def stats(service: ServiceDep) -> Stats:
    """Corpus and index figures."""
    return Stats.model_validate(dataclasses.asdict(service.stats()))
