"""One JSON error shape for every 4xx and 5xx: {"error": {"code", "message", "details"}}.

Codes by status: 400 `malformed_json` (a body that is not a JSON object: invalid JSON or UTF-8,
empty, nested too deeply, an array...) or `bad_request`; 401 `unauthorized`; 404 `not_found`; 405
`method_not_allowed`; 409 `conflict` or `model_mismatch`; 413 `payload_too_large`; 422
`validation_error` or `invalid_article`; 429 `too_many_requests` (too many connections from one
address, api/server.py); 503 `not_ready` or `store_unavailable`; 500 `internal_error`. Messages
never carry a server path: errors that could (start-up, jobs) keep a public message and log the
rest.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from citesearch.api.schemas import ErrorOut
from citesearch.index.errors import (
    CitesearchError,
    ConflictError,
    InvalidArticleError,
    InvalidQueryError,
    ModelMismatchError,
    NotFoundError,
    StoreUnavailableError,
)

log = logging.getLogger("citesearch.api")

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "not_ready",
}
_DESCRIPTIONS = {
    400: "Malformed body (`malformed_json`): not JSON, not UTF-8, empty, nested too deeply, or not a JSON object",
    401: "Missing or wrong bearer key (`unauthorized`)",
    404: "Not found (`not_found`)",
    409: "Conflicts with the current state (`conflict`)",
    413: "Body over the size limit (`payload_too_large`)",
    422: "Invalid values (`validation_error`, `invalid_article`)",
    503: "The model and index are loading or failed to load (`not_ready`), or the cluster database "
    "does not answer (`store_unavailable`)",
}
# Validation errors on the whole body that mean "this is not a JSON object".
_NOT_AN_OBJECT = {"model_attributes_type", "model_type", "dict_type", "missing"}


class ApiError(Exception):
    """An error raised by a route with its status, code and details."""

    def __init__(self, status: int, code: str, message: str, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []


def error_body(code: str, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    """The error envelope used by every error response."""
    return {"error": {"code": code, "message": message, "details": details or []}}


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSONResponse carrying the error envelope."""
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for a route: each status with the error envelope's schema."""
    return {s: {"model": ErrorOut, "description": _DESCRIPTIONS[s]} for s in statuses}


def validation_details(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic errors as {"loc", "message", "type"} (never the input: it may be large or secret)."""
    return [
        {
            "loc": [str(x) for x in e.get("loc", ())],
            "message": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]


def _malformed_body(errors: Sequence[Any]) -> str | None:
    """Why the body is not a JSON object, or None when the errors are about its values."""
    for e in errors:
        loc = tuple(e.get("loc", ()))
        if e.get("type") == "json_invalid":
            return "the request body is not valid JSON"
        if loc == ("body",) and e.get("type") in _NOT_AN_OBJECT:
            if e.get("type") == "missing":
                return "the request body is empty; send a JSON object"
            return "the request body must be a JSON object (Content-Type: application/json)"
    return None


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path, plus OPTIONS (Starlette's 405 names only the
    first route that matched the path)."""
    methods = {"OPTIONS"}
    for route in iter_route_contexts(request.app.routes):
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(route.methods or ())
    return sorted(methods)


def _method_not_allowed(request: Request) -> Response:
    """OPTIONS: 204 naming the path's methods; any other method not served here: 405, same header."""
    allow = {"Allow": ", ".join(allowed_methods(request))}
    if request.method == "OPTIONS":
        return Response(status_code=204, headers=allow)
    return error_response(405, "method_not_allowed", f"{request.method} is not allowed here", headers=allow)


# Domain exceptions without details, by class (the most derived class listed wins).
_DOMAIN_STATUS: dict[type[CitesearchError], tuple[int, str]] = {
    NotFoundError: (404, "not_found"),
    InvalidQueryError: (422, "validation_error"),
    ModelMismatchError: (409, "model_mismatch"),
    StoreUnavailableError: (503, "store_unavailable"),
    ConflictError: (409, "conflict"),
    CitesearchError: (400, "bad_request"),
}


async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return error_response(exc.status, exc.code, exc.message, exc.details, headers)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    details = validation_details(errors)
    malformed = _malformed_body(errors)
    if malformed is not None:
        return error_response(400, "malformed_json", malformed, details)
    return error_response(422, "validation_error", "the request is invalid", details)


async def _domain_error(_: Request, exc: CitesearchError) -> JSONResponse:
    if isinstance(exc, InvalidArticleError):
        return error_response(422, "invalid_article", str(exc), list(exc.details))
    status, code = next(_DOMAIN_STATUS[c] for c in type(exc).__mro__ if c in _DOMAIN_STATUS)
    return error_response(status, code, str(exc))


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code == 405:
        return _method_not_allowed(request)
    if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError):
        # FastAPI's "error parsing the body": JSON nested deeper than the parser goes.
        return error_response(400, "malformed_json", "the request body is nested too deeply to be read")
    if exc.status_code == 400 and isinstance(exc.__cause__, ValueError):
        # FastAPI's "error parsing the body": bytes that are not UTF-8 (or another decode error).
        return error_response(400, "malformed_json", "the request body is not valid UTF-8 JSON")
    code = _STATUS_CODES.get(exc.status_code, "error")
    return error_response(exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {}))


async def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "an unexpected error occurred")


def install_error_handlers(app: FastAPI) -> None:
    """Map domain exceptions, validation errors and HTTP errors to the one error shape."""
    app.exception_handler(ApiError)(_api_error)
    app.exception_handler(RequestValidationError)(_validation_error)
    app.exception_handler(CitesearchError)(_domain_error)  # and its subclasses (handlers go by MRO)
    app.exception_handler(StarletteHTTPException)(_http_error)
    app.exception_handler(Exception)(_unexpected_error)
