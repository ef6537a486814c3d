"""How `citesearch serve` runs uvicorn: deadlines for request heads and bodies, and connection caps.

uvicorn closes idle keep-alive connections (`timeout_keep_alive`) and answers 503 past
`limit_concurrency` connections or requests in flight, but has no deadline for reading a request:
a client that sends half a request line, or a head announcing a body and then one byte every few
seconds, keeps its connection (and a share of the cap) for as long as it likes. The protocol below
adds, per connection:

- a head deadline: the request head must be complete `header_timeout` seconds after the
  connection opened, the previous response finished, or the head began;
- a body deadline: the body must be complete `body_timeout` seconds after the end of the head,
  plus one second for every `body_min_rate` bytes received (a large body sent at a usable rate
  is never cut; one that stalls, or trickles below that rate, is). While the server itself does
  not read (its buffer is full, or the client waits for `100 Continue`), the clock restarts;
- a cap per client address (`max_per_client` open connections): a connection beyond it is
  answered at once with 429 and closed, and never counts against `limit_concurrency`, so a few
  clients cannot take every connection the server has.

A connection that misses a deadline is closed without a response (the client stopped talking).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from citesearch.api.errors import error_body
from citesearch.api.logs import protect_logs, settings_secrets
from citesearch.api.settings import Settings

log = logging.getLogger("citesearch.api")

LINGER_S = 2.0
"""How long a refused connection is read (and ignored) after its 429, so that a request the client
already sent does not turn our close into a reset that would discard the 429 before it is read."""


def _refusal(limit: int) -> bytes:
    body = json.dumps(
        error_body("too_many_requests", f"more than {limit} open connections from this address")
    ).encode()
    head = (
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class SlowClientProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus head and body deadlines and a cap per client address."""

    header_timeout: ClassVar[float] = 10.0
    body_timeout: ClassVar[float] = 10.0
    body_min_rate: ClassVar[float] = 1024.0
    max_per_client: ClassVar[int] = 0
    """0: no cap."""
    open_per_client: ClassVar[dict[str, int]] = {}
    """Open connections by client address, shared by the connections of one server (see `guarded_protocol`)."""

    _head_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None
    _body_start: float = 0.0
    _body_received: int = 0
    _counted: str | None = None
    _refused: bool = False

    # ---- the head deadline ---------------------------------------------------------------------
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

    # ---- the body deadline ---------------------------------------------------------------------
    def _arm_body_timer(self, delay: float) -> None:
        self._cancel_body_timer()
        self._body_timer = self.loop.call_later(delay, self._check_body)

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _server_is_not_reading(self) -> bool:
        """True while the body cannot arrive through no fault of the client."""
        cycle = self.cycle
        return self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue)

    def _check_body(self) -> None:
        self._body_timer = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        if self._server_is_not_reading():
            self._body_start, self._body_received = now, 0
            self._arm_body_timer(self.body_timeout)
            return
        earned = self._body_received / self.body_min_rate if self.body_min_rate > 0 else 0.0
        deadline = self._body_start + self.body_timeout + earned
        if now < deadline:
            self._arm_body_timer(deadline - now)
            return
        log.info(
            "closing a connection whose request body stalled (%d bytes in %.1f s)",
            self._body_received,
            now - self._body_start,
        )
        self.transport.close()

    # ---- the cap per client address ------------------------------------------------------------
    def _over_the_cap(self) -> bool:
        """Count this connection against its address; True when the address already has its share."""
        host = self.client[0] if self.client else None
        if not self.max_per_client or host is None:
            return False
        if self.open_per_client.get(host, 0) >= self.max_per_client:
            return True
        self.open_per_client[host] = self.open_per_client.get(host, 0) + 1
        self._counted = host
        return False

    def _refuse(self) -> None:
        """429 at once, then close: half-close now, fully once the client closes or after `LINGER_S`."""
        self._refused = True
        self.connections.discard(self)  # not part of the server's budget
        log.info(
            "refusing a connection: %s has %d open",
            self.client[0] if self.client else "?",
            self.max_per_client,
        )
        self.transport.write(_refusal(self.max_per_client))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)

    # ---- uvicorn's callbacks -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """A new connection: refused beyond the cap, else it has `header_timeout` seconds for its head."""
        super().connection_made(transport)
        if self._over_the_cap():
            self._refuse()
            return
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        """Parse the request (a refused connection's bytes are read and dropped)."""
        if not self._refused:
            super().data_received(data)

    def on_message_begin(self) -> None:
        """A request head begins: it has `header_timeout` seconds to complete."""
        super().on_message_begin()
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        """The head is complete: its deadline ends, the body's begins."""
        self._cancel_head_timer()
        super().on_headers_complete()
        self._body_start, self._body_received = self.loop.time(), 0
        self._arm_body_timer(self.body_timeout)

    def on_body(self, body: bytes) -> None:
        """Body bytes: each one buys `1 / body_min_rate` seconds more."""
        super().on_body(body)
        self._body_received += len(body)

    def on_message_complete(self) -> None:
        """The whole request is in: no deadline while it is served."""
        self._cancel_body_timer()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        """Idle again (uvicorn armed its keep-alive timer): the next head gets a deadline too."""
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:
            self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """No timer outlives its connection; its address gets its slot back."""
        self._cancel_head_timer()
        self._cancel_body_timer()
        if self._counted is not None:
            left = self.open_per_client.get(self._counted, 1) - 1
            if left > 0:
                self.open_per_client[self._counted] = left
            else:
                self.open_per_client.pop(self._counted, None)
            self._counted = None
        super().connection_lost(exc)


def guarded_protocol(settings: Settings) -> type[SlowClientProtocol]:
    """The protocol class with this server's deadlines and cap (uvicorn builds protocols from a class),
    and a count of open connections per address of its own."""
    attributes: dict[str, Any] = {
        "header_timeout": settings.header_timeout_s,
        "body_timeout": settings.body_timeout_s,
        "body_min_rate": float(settings.body_min_bytes_per_s),
        "max_per_client": settings.max_connections_per_client,
        "open_per_client": {},
    }
    return type("SlowClientProtocol", (SlowClientProtocol,), attributes)


def uvicorn_config(app: Any, settings: Settings, host: str, port: int) -> uvicorn.Config:
    """The uvicorn configuration `citesearch serve` runs with."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level,
        http=guarded_protocol(settings),
        timeout_keep_alive=settings.timeout_keep_alive_s,
        limit_concurrency=settings.max_connections,
    )


def serve(app: Any, settings: Settings, host: str, port: int) -> None:
    """Run the server until interrupted."""
    config = uvicorn_config(app, settings, host, port)
    protect_logs(settings_secrets(settings))  # uvicorn's own handlers exist now: redact them too
    uvicorn.Server(config).run()
