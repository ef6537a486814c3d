"""Dependency aliases used by the routes."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from citesearch.api.errors import ApiError
from citesearch.api.settings import Settings
from citesearch.api.state import AppState
from citesearch.index.jobs import JobRunner
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


def _check(request: Request, key: str | None) -> None:
    if key is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), key.encode()):
        raise ApiError(401, "unauthorized", "missing or invalid bearer token")


def require_write(request: Request) -> None:
    """Writes need the API key when one is set."""
    _check(request, get_settings(request).api_key)


def require_read(request: Request) -> None:
    """Reads need the read key (or the API key) when a read key is set."""
    settings = get_settings(request)
    if settings.read_key is None:
        return
    try:
        _check(request, settings.read_key)
    except ApiError:
        _check(request, settings.api_key or settings.read_key)


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[SearchService, Depends(get_service)]
JobsDep = Annotated[JobRunner, Depends(get_jobs)]
StateDep = Annotated[AppState, Depends(get_state)]
WriteAuth = Depends(require_write)
ReadAuth = Depends(require_read)
