"""The MCP server: tools `search` and `fetch`, over streamable HTTP at /mcp and over stdio.

The tools have the shape chat clients' connectors ask for: `search` → `{"results": [{"id",
"title", "url", "text", ...}]}`, `fetch` → `{"id", "title", "text", "url", "metadata"}`, as
structured content and as the same JSON in a text block. `id` is an article id. Every `url` is
the article's own, else a link to the cited span on this server (`{base}/articles/{id}#chars=s-e`,
base: CITESEARCH_PUBLIC_URL, else the request's). A bad argument, an unknown id or a server still
loading is a tool error (`isError`), never a protocol error.

Over HTTP the REST API's bearer keys apply (`McpEndpoint`); the session manager runs inside the
app's lifespan, a new one each time the app starts.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlsplit

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from citesearch.api import presenters
from citesearch.api.answer import cite_url
from citesearch.api.errors import error_body
from citesearch.api.schemas import SearchRequest, ToolDocument, ToolSearchOut, ToolSearchResult, query_limit
from citesearch.api.settings import Settings
from citesearch.index.articles import validate_article_id
from citesearch.index.errors import CitesearchError, NotFoundError
from citesearch.index.service import SearchService

ServiceGetter = Callable[[], SearchService | None]
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
MCP_METHODS = ("GET", "POST", "DELETE")
"""What the streamable HTTP transport serves at /mcp (POST messages, GET a stream, DELETE a session)."""
_ALLOW = ", ".join(sorted((*MCP_METHODS, "OPTIONS"))).encode()

INSTRUCTIONS = (
    "citesearch searches news articles in any language. Call `search` with the user's question "
    "(any language) for ranked passages with their URLs; call `fetch` with a result's `id` for the "
    "whole article. Cite the `url` of what you use."
)


def _base(settings: Settings, ctx: Context[Any, Any], fallback: str) -> str:
    """Where links to spans point: the configured public URL, else the HTTP request's own origin."""
    if settings.public_url:
        return settings.public_url
    url = getattr(ctx.request_context.request, "url", None)
    if url is not None:
        return f"{url.scheme}://{url.netloc}"
    return fallback


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())


def build_server(get_service: ServiceGetter, settings: Settings, fallback_base: str) -> MCPServer:
    """The MCP server with its two tools, reading the service through `get_service` (None: loading)."""
    # MCPServer() calls logging.basicConfig: a handler held on the root logger meanwhile makes that
    # a no-op, so the SDK does not take over the process's logging (level, format, stream).
    guard = logging.NullHandler()
    logging.getLogger().addHandler(guard)
    try:
        server = MCPServer(name="citesearch", instructions=INSTRUCTIONS, version="0.1.0")
    finally:
        logging.getLogger().removeHandler(guard)

    def service() -> SearchService:
        s = get_service()
        if s is None:
            raise ToolError("citesearch is still loading its model and index; try again shortly")
        return s

    @server.tool(name="search", structured_output=True)
    def search(
        query: str,
        ctx: Context[Any, Any],
        top_k: int = 5,
        language: list[str] | None = None,
        published_after: str | None = None,
        published_before: str | None = None,
    ) -> ToolSearchOut:
        """Search news articles for passages answering `query` (any language). Optional: `top_k`
        (1-50), `language` (BCP-47 codes of the articles to search), `published_after` and
        `published_before` (YYYY-MM-DD, inclusive). Each result's `id` can be passed to `fetch`."""
        fields = {
            "query": query,
            "top_k": top_k,
            "highlight": "semantic",
            "filters": {
                "language": language or [],
                "published_after": published_after,
                "published_before": published_before,
            },
        }
        try:
            with query_limit(settings.max_query_chars):
                req = SearchRequest.model_validate(fields)
        except ValidationError as exc:
            raise ToolError(f"invalid arguments: {_validation_message(exc)}") from None
        try:
            outcome = service().search(presenters.search_query(req))
        except CitesearchError as exc:
            raise ToolError(str(exc)) from None
        base = _base(settings, ctx, fallback_base)
        return ToolSearchOut(
            results=[
                ToolSearchResult(
                    id=h.passage.article_id,
                    title=h.passage.title or h.passage.article_id,
                    url=cite_url(
                        base, h.passage.url, h.passage.article_id, h.passage.char_start, h.passage.char_end
                    ),
                    text=h.passage.text,
                    highlight=h.highlight.text,
                    answers=h.highlight.answers,
                    score=h.score,
                    char_start=h.passage.char_start,
                    char_end=h.passage.char_end,
                    source=h.passage.source,
                    published_at=h.passage.published_at,
                    language=h.passage.language,
                )
                for h in outcome.hits
            ]
        )

    @server.tool(name="fetch", structured_output=True)
    def fetch(id: str, ctx: Context[Any, Any]) -> ToolDocument:
        """The whole article with this `id` (an `id` from `search`): title, text, url and metadata."""
        try:
            article_id = validate_article_id(id)
            row, passages = service().get_article(article_id)
        except (ValueError, NotFoundError):
            raise ToolError(f"no article with id {id[:200]!r}") from None
        base = _base(settings, ctx, fallback_base)
        metadata = {
            **row.metadata,
            "source": row.source,
            "published_at": row.published_at,
            "language": row.language,
            "updated_at": row.updated_at,
            "passages": len(passages),
        }
        return ToolDocument(
            id=row.id,
            title=row.title or row.id,
            text=row.text,
            url=row.url or f"{base}/articles/{quote(row.id, safe='')}",
            metadata=metadata,
        )

    return server


def _security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection (Host and Origin checked) when bound to loopback, as the SDK does by
    default; the public URL's host is allowed too. Bound elsewhere, the bearer keys protect /mcp."""
    if settings.host not in _LOOPBACK:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    if settings.public_url:
        netloc = urlsplit(settings.public_url).netloc
        hosts += [netloc, f"{netloc}:*"]
        origins.append(settings.public_url)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


class McpEndpoint:
    """The ASGI endpoint at /mcp: the REST API's read keys, then the SDK's streamable HTTP transport."""

    def __init__(self, get_service: ServiceGetter, settings: Settings) -> None:
        self.get_service = get_service
        self.settings = settings
        self._app: ASGIApp | None = None

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """Serve /mcp for the life of this context (the app's lifespan): a fresh session manager."""
        fallback = f"http://{self.settings.host}:{self.settings.port}"
        server = build_server(self.get_service, self.settings, fallback)
        server.streamable_http_app(streamable_http_path="/mcp", transport_security=_security(self.settings))
        self._app = StreamableHTTPASGIApp(server.session_manager)
        try:
            async with server.session_manager.run():
                yield
        finally:
            self._app = None

    def _authorized(self, scope: Scope) -> bool:
        keys = [k for k in (self.settings.read_key, self.settings.api_key) if k]
        if self.settings.read_key is None:
            return True
        header = dict(scope.get("headers", [])).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and any(
            hmac.compare_digest(token.encode(), k.encode()) for k in keys
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method", "")
        if method == "OPTIONS":  # as on every path: 204 naming the methods (before the keys, like them)
            await send({"type": "http.response.start", "status": 204, "headers": [(b"allow", _ALLOW)]})
            await send({"type": "http.response.body", "body": b""})
        elif method not in MCP_METHODS:
            await _send_error(send, 405, "method_not_allowed", f"{method} is not allowed here", _ALLOW)
        elif not self._authorized(scope):
            await _send_error(send, 401, "unauthorized", "missing or invalid bearer token")
        elif self._app is None:
            await _send_error(send, 503, "not_ready", "the MCP endpoint is not running")
        else:
            await self._app(scope, receive, send)


async def _send_error(send: Send, status: int, code: str, message: str, allow: bytes | None = None) -> None:
    body = json.dumps(error_body(code, message)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if allow is not None:
        headers.append((b"allow", allow))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def run_stdio(service: SearchService, settings: Settings) -> None:
    """Serve the tools over stdin/stdout until the client closes them (`citesearch mcp`)."""
    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    server = build_server(lambda: service, settings, base)
    server.run("stdio")
