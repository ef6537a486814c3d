"""Routes: parse, call the domain, map the result. Sync handlers run in the threadpool, off the event loop.

Every status a route can answer is declared in its `responses=` (all with the error envelope).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError

from citesearch.api import presenters
from citesearch.api.deps import JobsDep, ReadAuth, ServiceDep, SettingsDep, StateDep, WriteAuth
from citesearch.api.errors import ApiError, error_responses
from citesearch.api.jobs import JobConflictError, reindex_work
from citesearch.api.metrics import Metrics
from citesearch.api.schemas import (
    MAX_QUERY_CHARS,
    QUERY_FIELD_SCHEMA,
    ArticleList,
    ArticleOut,
    ArticlesIn,
    ArticlesWritten,
    Day,
    JobAccepted,
    JobOut,
    LanguageTag,
    ReindexRequest,
    SearchRequest,
    SearchResponse,
    Stats,
)
from citesearch.api.settings import Settings
from citesearch.index.articles import ID_MAX_LENGTH, ID_PATTERN

router = APIRouter()

ArticleId = Annotated[str, Path(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH)]
JobId = Annotated[str, Path(pattern="^[0-9a-f]{32}$")]


# ---- health -------------------------------------------------------------------------------------
@router.get("/healthz", tags=["health"])
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", tags=["health"], responses=error_responses(503))
def readyz(state: StateDep) -> dict[str, str]:
    """200 only once the model and the index are loaded.

    A cluster replica whose database is unreachable still answers 200, with status "degraded":
    it serves searches from its local index (keep it behind the load balancer), writes get 503.
    """
    if state.service is None:
        msg = f"failed to start: {state.load_error}" if state.load_error else "loading"
        raise ApiError(503, "not_ready", msg)
    cluster = state.service.cluster_status()
    if cluster is not None and not cluster.writable:
        return {"status": "degraded", "reason": "the cluster database is unreachable: searches only"}
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
            if s.cluster is not None:
                c = s.cluster
                m.applied_seq.set(c.applied_seq)
                m.head_seq.set(c.head_seq)
                m.lag_entries.set(c.lag_entries)
                m.lag_seconds.set(c.lag_seconds if c.lag_seconds is not None else float("nan"))
                m.writable.set(1 if c.writable else 0)

    return Response(state.metrics.render(refresh), media_type=CONTENT_TYPE_LATEST)


# ---- search -------------------------------------------------------------------------------------
def _search(service: ServiceDep, req: SearchRequest) -> SearchResponse:
    return presenters.search_response(req, service.search(presenters.search_query(req)))


@router.post(
    "/v1/search",
    tags=["search"],
    dependencies=[ReadAuth],
    responses=error_responses(400, 401, 413, 422, 503),
)
def search_post(req: SearchRequest, service: ServiceDep) -> SearchResponse:
    """Ranked, cited passages for a question in any language."""
    return _search(service, req)


# GET parameter -> SearchRequest field, to name the parameter in validation errors.
_GET_NAMES = {"query": "q"}


def _get_request(fields: dict[str, Any]) -> SearchRequest:
    try:
        return SearchRequest.model_validate(fields)
    except ValidationError as exc:
        errors = [
            {**e, "loc": ("query", *[_GET_NAMES.get(str(p), p) for p in e["loc"] if p != "filters"])}
            for e in exc.errors()
        ]
        raise RequestValidationError(errors) from None


@router.get("/v1/search", tags=["search"], dependencies=[ReadAuth], responses=error_responses(401, 422, 503))
def search_get(
    *,
    service: ServiceDep,
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, json_schema_extra=QUERY_FIELD_SCHEMA)],
    top_k: Annotated[int, Query(ge=1, le=50)] = 5,
    mode: Annotated[str, Query(pattern="^(hybrid|dense|lexical)$")] = "hybrid",
    offset: Annotated[int, Query(ge=0, le=1000)] = 0,
    language: Annotated[list[LanguageTag], Query(max_length=50, default_factory=list)],
    source: Annotated[list[str], Query(max_length=100, default_factory=list)],
    published_after: Day | None = None,
    published_before: Day | None = None,
    context: bool = False,
    highlight: Annotated[str, Query(pattern="^(lexical|semantic)$")] = "semantic",
) -> SearchResponse:
    """The same search as POST, from query parameters."""
    req = _get_request(
        {
            "query": q,
            "top_k": top_k,
            "mode": mode,
            "offset": offset,
            "context": context,
            "highlight": highlight,
            "filters": {
                "language": language,
                "source": source,
                "published_after": published_after,
                "published_before": published_before,
            },
        }
    )
    return _search(service, req)


# ---- articles -----------------------------------------------------------------------------------
@router.post(
    "/v1/articles",
    tags=["articles"],
    dependencies=[WriteAuth],
    responses=error_responses(400, 401, 413, 422, 503),
)
def post_articles(body: ArticlesIn, service: ServiceDep, settings: SettingsDep) -> ArticlesWritten:
    """Create or update articles; they are searchable when the response returns."""
    if len(body.articles) > settings.max_batch:
        raise ApiError(422, "validation_error", f"at most {settings.max_batch} articles per request")
    results = service.upsert(body.articles)
    return presenters.articles_written(results, service.state.generation)


@router.get(
    "/v1/articles", tags=["articles"], dependencies=[ReadAuth], responses=error_responses(401, 422, 503)
)
def list_articles(
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None,
        Query(
            max_length=2 * ID_MAX_LENGTH,
            pattern=presenters.CURSOR_PATTERN,
            description="Opaque: the `next_cursor` of the previous page.",
        ),
    ] = None,
) -> ArticleList:
    """Articles in id order; pass `next_cursor` back as `cursor` for the next page."""
    try:
        after = presenters.decode_cursor(cursor) if cursor is not None else None
    except ValueError as exc:
        detail = {"loc": ["query", "cursor"], "message": str(exc), "type": "invalid_cursor"}
        raise ApiError(422, "validation_error", str(exc), [detail]) from None
    rows, last_id = service.list_articles(limit, after)
    return presenters.article_list(rows, last_id)


@router.get(
    "/v1/articles/{article_id}",
    tags=["articles"],
    dependencies=[ReadAuth],
    responses=error_responses(401, 404, 422, 503),
)
def get_article(article_id: ArticleId, service: ServiceDep) -> ArticleOut:
    """An article with its passages and their offsets."""
    row, passages = service.get_article(article_id)
    return presenters.article_out(row, passages)


@router.delete(
    "/v1/articles/{article_id}",
    tags=["articles"],
    status_code=204,
    dependencies=[WriteAuth],
    responses=error_responses(401, 404, 422, 503),
)
def delete_article(article_id: ArticleId, service: ServiceDep) -> Response:
    """Delete an article; gone from search when the response returns."""
    service.delete(article_id)
    return Response(status_code=204)


# ---- reindex and jobs ---------------------------------------------------------------------------
def _reindex_model(body: ReindexRequest | None, settings: Settings) -> tuple[str, str] | None:
    """(name, what to load) for the model a reindex asks for; 422 unless it is allowed."""
    if body is None or body.model is None:
        return None
    source = settings.reindex_model_source(body.model)
    if source is None:
        known = ", ".join(settings.reindex_models()) or "none"
        raise ApiError(
            422,
            "validation_error",
            f"unknown model {body.model[:100]!r}: name a directory of the models directory ({known}) "
            "or the configured CITESEARCH_MODEL",
            [{"loc": ["body", "model"], "message": "unknown model", "type": "unknown_model"}],
        )
    return body.model, source


@router.post(
    "/v1/reindex",
    tags=["jobs"],
    status_code=202,
    dependencies=[WriteAuth],
    responses=error_responses(400, 401, 409, 413, 422, 503),
)
def reindex(
    state: StateDep, service: ServiceDep, jobs: JobsDep, body: ReindexRequest | None = None
) -> JobAccepted:
    """Rebuild every passage and vector in a new generation while search keeps answering.

    Refused before it is accepted: 409 while a reindex runs (here, or in a cluster on any replica:
    the right to reindex is taken now), 503 when the cluster database does not answer.
    """
    model = _reindex_model(body, state.settings)
    try:
        job = jobs.start_exclusive(
            "reindex",
            lambda: reindex_work(service, state.embedder_factory, model, service.reserve_reindex()),
        )
    except JobConflictError as exc:
        raise ApiError(409, "conflict", "a reindex is already running", [{"job_id": exc.job.id}]) from None
    return JobAccepted(job_id=job.id)


@router.get(
    "/v1/jobs/{job_id}", tags=["jobs"], dependencies=[ReadAuth], responses=error_responses(401, 404, 422)
)
def get_job(job_id: JobId, jobs: JobsDep) -> JobOut:
    """Status and progress of a background job."""
    job = jobs.get(job_id)
    if job is None:
        raise ApiError(404, "not_found", f"job {job_id!r} not found")
    return presenters.job_out(job)


@router.get("/v1/stats", tags=["health"], dependencies=[ReadAuth], responses=error_responses(401, 503))
def stats(service: ServiceDep) -> Stats:
    """Corpus and index figures."""
    return presenters.stats(service.stats())
