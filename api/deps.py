"""Dependency aliases used by the routes."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from citesearch.api.errors import ApiError
from citesearch.api.jobs import JobRunner
from citesearch.api.settings import Settings
from citesearch.api.state import AppState
from citesearch.index.service import SearchService


def get_state(request: Request) -> AppState:
    """The application state created by the lifespan."""
    state: AppState = request.app.state.citesearch
    return state


def get_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    return get_state(request).settings


def get_service(request: Request) -> SearchService:
    """The loaded search service, or 503 while the model and index are loading."""
    state = get_state(request)
    if state.service is None:
        if state.load_error is not None:
            raise ApiError(503, "not_ready", f"the service failed to start: {state.load_error}")
        raise ApiError(503, "not_ready", "the model and index are still loading")
    return state.service


def get_jobs(request: Request) -> JobRunner:
    """The background job runner."""
    return get_state(request).jobs


def _bearer_matches(request: Request, key: str) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    # compare_digest: the time taken does not tell how much of the key was right.
    return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), key.encode())


def _require(request: Request, *keys: str | None) -> None:
    wanted = [k for k in keys if k is not None]
    if wanted and not any(_bearer_matches(request, k) for k in wanted):
        raise ApiError(401, "unauthorized", "missing or invalid bearer token")


def require_write(request: Request) -> None:
    """Writes need the API key; with only a read key set, they need the read key."""
    _require(request, get_settings(request).write_key)


def require_read(request: Request) -> None:
    """With a read key set, reads need it or the API key; otherwise reads are open."""
    settings = get_settings(request)
    if settings.read_key is not None:
        _require(request, settings.read_key, settings.api_key)


# FastAPI runs a plain `def` dependency in the threadpool: one thread hop per dependency per request.
# These read request state and never block, so they run on the event loop (the gain was within the
# noise of a single-client measurement; it grows with concurrent requests, which share the pool).
async def _state_dep(request: Request) -> AppState:
    return get_state(request)


async def _settings_dep(request: Request) -> Settings:
    return get_settings(request)


async def _service_dep(request: Request) -> SearchService:
    return get_service(request)


async def _jobs_dep(request: Request) -> JobRunner:
    return get_jobs(request)


async def _write_auth(request: Request) -> None:
    require_write(request)


async def _read_auth(request: Request) -> None:
    require_read(request)


SettingsDep = Annotated[Settings, Depends(_settings_dep)]
ServiceDep = Annotated[SearchService, Depends(_service_dep)]
JobsDep = Annotated[JobRunner, Depends(_jobs_dep)]
StateDep = Annotated[AppState, Depends(_state_dep)]
WriteAuth = Depends(_write_auth)
ReadAuth = Depends(_read_auth)
