"""The app factory: middleware, error handlers, routes, and a lifespan that loads model and index once."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from citesearch.api.chat_routes import router as chat_router
from citesearch.api.errors import error_body, install_error_handlers
from citesearch.api.mcp import McpEndpoint
from citesearch.api.metrics import Metrics, MetricsMiddleware
from citesearch.api.page import router as page_router
from citesearch.api.routes import router
from citesearch.api.schemas import query_limit
from citesearch.api.settings import Settings
from citesearch.api.state import AnswerFactory, AppState, EmbedderFactory
from citesearch.index.service import SearchService

log = logging.getLogger("citesearch.api")

JOBS_FILE = "jobs.json"
"""The job records, in the data directory (api/jobs.py)."""


class _TooLarge(Exception):
    pass


class RequestLimitsMiddleware:
    """Per-request limits: 413 with the error envelope when the body exceeds `max_body_bytes`
    (declared or streamed), and the query length bound for SearchRequest validation."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_query_chars: int) -> None:
        self.app = app
        self.max_bytes = max_body_bytes
        self.max_query_chars = max_query_chars

    async def _reject(self, send: Send) -> None:
        body = json.dumps(
            error_body("payload_too_large", f"request body exceeds {self.max_bytes} bytes")
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _declared_too_big(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    return int(value) > self.max_bytes
                except ValueError:
                    return False
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._declared_too_big(scope):
            await self._reject(send)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            with query_limit(self.max_query_chars):
                await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send)


class CitesearchAPI(FastAPI):
    """FastAPI whose OpenAPI states this server's own limits and the models it can reindex with."""

    def openapi(self) -> dict[str, Any]:
        """The schema, built once, with the configured limits (`max_batch`, `max_query_chars`) and the
        names `ReindexRequest.model` accepts (the models directory), so that it is exact."""
        if self.openapi_schema is None:
            state: AppState = self.state.citesearch
            _declare_settings(super().openapi(), state.settings)
        return self.openapi_schema or {}


def _declare_settings(schema: dict[str, Any], settings: Settings) -> None:
    components = schema["components"]["schemas"]
    components["ArticlesIn"]["properties"]["articles"]["maxItems"] = settings.max_batch
    components["SearchRequest"]["properties"]["query"]["maxLength"] = settings.max_query_chars
    components["AnswerRequest"]["properties"]["query"]["maxLength"] = settings.max_query_chars
    for parameter in schema["paths"]["/v1/search"]["get"]["parameters"]:
        if parameter["name"] == "q":
            parameter["schema"]["maxLength"] = settings.max_query_chars
    names = settings.reindex_models()
    model = components["ReindexRequest"]["properties"]["model"]
    model["anyOf"] = [{"type": "string", "enum": names}, {"type": "null"}] if names else [{"type": "null"}]


def _public_load_error(exc: Exception) -> str:
    """What clients may read about a failed start (the exception itself may name server paths)."""
    return (
        f"the model or the index could not be loaded ({type(exc).__name__}); the server log has the details"
    )


def create_app(
    settings: Settings | None = None,
    *,
    embedder_factory: EmbedderFactory | None = None,
    answer_factory: AnswerFactory | None = None,
    load_in_background: bool = False,
) -> FastAPI:
    """Build the app. The model and index load in the lifespan (in a thread when `load_in_background`,
    so /healthz answers at once and /readyz turns 200 when loading is done)."""
    settings = settings or Settings()
    state = AppState(
        settings=settings,
        metrics=Metrics(),
        embedder_factory=embedder_factory or settings.load_embedder,
        answer_factory=answer_factory or settings.load_answer_model,
    )

    def load() -> None:
        try:
            embedder = state.embedder_factory(settings.model)
            answers = state.answer_factory()
            service = SearchService(
                settings.index_config(),
                embedder,
                cluster=settings.cluster_config(),
                load_model=lambda name: state.embedder_factory(
                    None if name is None else settings.reindex_model_source(name) or name
                ),
                answers=answers,
            )
            try:  # before the service is ready, so no question or write waits on a compile
                service.prepare_questions()
            except BaseException:
                service.close()
                raise
            # The data directory is this process's now (its lock is held): jobs a restart cut off are
            # recorded as failed before anyone can ask.
            state.jobs.open(settings.data_dir / JOBS_FILE)
            state.service = service
            log.info("citesearch ready: %s", service.stats())
        except Exception as exc:
            log.exception("start-up failed")
            state.load_error = _public_load_error(exc)
        finally:
            state.ready.set()

    mcp = McpEndpoint(lambda: state.service, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if load_in_background:
            threading.Thread(target=load, name="citesearch-load", daemon=True).start()
        else:
            load()
            if state.load_error is not None:
                raise RuntimeError(state.load_error)
        try:
            async with mcp.run():  # the MCP session manager lives as long as the app
                yield
        finally:
            state.ready.wait()
            running = state.jobs.active()
            if running is not None:
                running.done.wait(timeout=60)
            if state.service is not None:
                state.service.close()
                state.service = None

    app = CitesearchAPI(
        title="citesearch",
        version="0.1.0",
        summary="Ranked, cited passages from news articles, for questions in any language.",
        lifespan=lifespan,
    )
    app.state.citesearch = state
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(page_router)  # the search page: `/`, `/articles/{id}` (HTML)
    app.include_router(chat_router)
    app.router.routes.append(Route("/mcp", endpoint=mcp))
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(
        RequestLimitsMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_query_chars=settings.max_query_chars,
    )
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    return app
