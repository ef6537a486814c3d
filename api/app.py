"""The app factory: middleware, error handlers, routes, and a lifespan that loads model and index once."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from citesearch.api.errors import error_body, install_error_handlers
from citesearch.api.metrics import Metrics, MetricsMiddleware
from citesearch.api.routes import router
from citesearch.api.settings import Settings
from citesearch.api.state import AppState
from citesearch.embeddings import Embedder
from citesearch.index.service import SearchService

log = logging.getLogger("citesearch.api")

EmbedderFactory = Callable[[str | None], Embedder]


class BodyLimitMiddleware:
    """413 with the error envelope when a request body exceeds the limit (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._reject(send)
                    return
        seen = 0
        started = False

        class _TooLarge(Exception):
            pass

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
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send)


def create_app(
    settings: Settings | None = None,
    *,
    embedder_factory: EmbedderFactory | None = None,
    load_in_background: bool = False,
) -> FastAPI:
    """Build the app. The model and index load in the lifespan (in a thread when `load_in_background`,
    so /healthz answers at once and /readyz turns 200 when loading is done)."""
    settings = settings or Settings()
    factory = embedder_factory or settings.load_embedder
    state = AppState(settings=settings, metrics=Metrics())

    def load() -> None:
        try:
            embedder = factory(settings.model)
            state.service = SearchService(settings.index_config(), embedder)
            log.info("citesearch ready: %s", state.service.stats())
        except Exception as exc:
            log.exception("start-up failed")
            state.load_error = f"{type(exc).__name__}: {exc}"
        finally:
            state.ready.set()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if load_in_background:
            threading.Thread(target=load, name="citesearch-load", daemon=True).start()
        else:
            load()
            if state.load_error is not None:
                raise RuntimeError(state.load_error)
        try:
            yield
        finally:
            state.ready.wait()
            running = state.jobs.active()
            if running is not None:
                running.done.wait(timeout=60)
            if state.service is not None:
                state.service.close()
                state.service = None

    app = FastAPI(
        title="citesearch",
        version="0.1.0",
        summary="Ranked, cited passages from news articles, for questions in any language.",
        lifespan=lifespan,
    )
    app.state.citesearch = state
    app.state.embedder_factory = factory
    install_error_handlers(app)
    app.include_router(router)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    return app
