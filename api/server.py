"""How `citesearch serve` runs uvicorn: keep-alive and header timeouts and a connection cap.

uvicorn closes idle keep-alive connections (`timeout_keep_alive`) and answers 503 past
`limit_concurrency` connections or requests in flight, but has no timeout for reading a request
head: a client that opens a connection and sends half a request line keeps it forever. The
protocol below closes a connection whose request head is not complete `header_timeout` seconds
after the connection opened, the previous response finished, or the head began.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from citesearch.api.settings import Settings

log = logging.getLogger("citesearch.api")


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus a deadline for each request head (`header_timeout` seconds)."""

    header_timeout: ClassVar[float] = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            log.info("closing a connection that sent no complete request head in %.1f s", self.header_timeout)
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """A new connection has `header_timeout` seconds to send its first request head."""
        super().connection_made(transport)
        self._arm_head_timer()

    def on_message_begin(self) -> None:
        """A request head begins: it has `header_timeout` seconds to complete."""
        super().on_message_begin()
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        """The head is complete: no deadline while the request is served."""
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        """Idle again (uvicorn armed its keep-alive timer): the next head gets a deadline too."""
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:
            self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """No timer outlives its connection."""
        self._cancel_head_timer()
        super().connection_lost(exc)


def header_timeout_protocol(seconds: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class with its head deadline set (uvicorn builds protocols from a class)."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": seconds})


def uvicorn_config(app: Any, settings: Settings, host: str, port: int) -> uvicorn.Config:
    """The uvicorn configuration `citesearch serve` runs with."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level,
        http=header_timeout_protocol(settings.header_timeout_s),
        timeout_keep_alive=settings.timeout_keep_alive_s,
        limit_concurrency=settings.max_connections,
    )


def serve(app: Any, settings: Settings, host: str, port: int) -> None:
    """Run the server until interrupted."""
    uvicorn.Server(uvicorn_config(app, settings, host, port)).run()
