"""The uvicorn server the service runs on, hardened against slow and oversized clients, and
its drain.

uvicorn (0.54, httptools) on its own waits forever for a client that sends its request line and
headers slowly or not at all (slowloris: 1,000 such connections hold 1,000 sockets), takes
headers of any size, and answers its own refusals (a malformed request, `limit_concurrency`)
and a request cut at shutdown in plain text. Here, under the `http` group of the settings
(`HttpSettings`, service/settings.py):

- `GuardedHttpProtocol` closes a connection whose request line and headers are not complete
  within `header_timeout_s` (408), refuses more than `max_header_bytes` of them (431), sheds
  requests over `limit_concurrency` (503, Retry-After), and gives each of these refusals, and
  the parser's own 400, the service's JSON error body and `Connection: close`;
- `Server` starts a drain by marking the service draining (`/readyz` answers 503) while the
  listener is still open, keeps serving for `drain_grace_s` so load balancers see it, then
  closes the listener and waits up to `drain_timeout_s` for requests in flight;
- `DrainGuard` answers a request that the drain timeout cuts with a JSON 503;
- `RequestIds` gives every request an id, echoed in the response and in its error body.

A body that stalls is the app's to time out (`body_idle_timeout_s`, service/upload.py): only
the route knows whether it reads a body. `server_config` is the uvicorn configuration of both
`actserve serve` and `service.embedded.EmbeddedServer`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from asyncio import TimerHandle
from typing import Any, ClassVar

import uvicorn
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.errors import error_body
from service.settings import HttpSettings

__all__ = ["DrainGuard", "GuardedHttpProtocol", "RequestIds", "Server", "server_config"]


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size cap on the request head, and
    JSON refusals. `limits` is set per server by `server_config` (a subclass per config)."""

    limits: ClassVar[HttpSettings] = HttpSettings()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limit_concurrency = None  # checked in on_headers_complete, with a JSON 503
        self._head_bytes = 0
        self._head_timer: TimerHandle | None = None
        self._refusal: tuple[int, str, str] | None = None

    # ----------------------------------------------------------------- connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    # ----------------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        limit = self.limits.limit_concurrency
        if limit is None or (len(self.connections) < limit and len(self.tasks) < limit):
            super().on_headers_complete()
            return
        app, self.app = self.app, _too_many_connections
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    # ----------------------------------------------------------------- refusals

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to what the parser refuses, and ours to an oversized head."""
        status, code, message = self._refusal or (400, "bad_request", f"malformed HTTP: {msg}")
        self._refuse(status, code, message)

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.limits.max_header_bytes:
            self._refusal = (
                431,
                "headers_too_large",
                f"the request line and headers exceed {self.limits.max_header_bytes:,} bytes "
                "(ACTSERVE_MAX_HEADER_BYTES)",
            )
            raise ValueError(self._refusal[2])  # stops the parser; send_400_response answers

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_late)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request's head behind a response still running: judge it later.
            self._arm_head_timer()
            return
        if not self.transport.is_closing():
            self._refuse(
                408,
                "request_timeout",
                f"the request line and headers did not arrive within "
                f"{self.limits.header_timeout_s:g} s (ACTSERVE_HEADER_TIMEOUT_S)",
            )

    def _refuse(self, status: int, code: str, message: str) -> None:
        body = _encoded(error_body(code, message))
        head = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()


def _encoded(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


_REASONS = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large"}


async def _too_many_connections(scope: Scope, receive: Receive, send: Send) -> None:
    body = _encoded(
        error_body(
            "too_many_connections",
            "the server is at its connection limit (ACTSERVE_LIMIT_CONCURRENCY); retry shortly",
        )
    )
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class DrainGuard:
    """A request still running when the drain timeout ends is cancelled by uvicorn, which
    would answer a plain-text 500: answer it with a JSON 503 instead. A pure ASGI middleware."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except asyncio.CancelledError:
            if started or not draining(scope["app"]):
                raise
            body = _encoded(
                error_body(
                    "draining",
                    "the server shut down before this request finished "
                    "(ACTSERVE_DRAIN_TIMEOUT_S); retry it",
                    request_id=scope.get("state", {}).get("request_id"),
                )
            )
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})


class RequestIds:
    """Gives every request an id (the client's X-Request-ID when plain, else a new one),
    echoed in the response. A pure ASGI middleware: the request's messages pass through
    untouched, disconnects included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(Headers(scope=scope).get("x-request-id", ""))
        scope.setdefault("state", {})["request_id"] = request_id

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        await self.app(scope, receive, tagged)


def _request_id(given: str) -> str:
    """The client's request id when it is short and plain, else a new one."""
    if 0 < len(given) <= 64 and all(c.isalnum() or c in "-_." for c in given):
        return given
    return uuid.uuid4().hex[:16]


def _engine(app: Any) -> Any:
    """The service's `Engine` (service/engine.py); None before the lifespan made it, or for
    another app (`EmbeddedServer(app=...)`)."""
    return getattr(getattr(app, "state", None), "engine", None)


def draining(app: Any) -> bool:
    """Whether the service's drain has begun (`Engine.draining`)."""
    engine = _engine(app)
    return engine is not None and engine.draining


class Server(uvicorn.Server):
    """uvicorn's server with a drain that readiness probes can see coming; `config` comes
    from `server_config`."""

    def __init__(self, config: uvicorn.Config, limits: HttpSettings) -> None:
        super().__init__(config)
        self.limits = limits

    async def shutdown(self, sockets: Any = None) -> None:
        engine = _engine(self.config.app)
        if engine is not None:
            engine.drain()  # /readyz and new requests: 503 from now, the listener still open
        if self.limits.drain_grace_s and not self.force_exit:
            await asyncio.sleep(self.limits.drain_grace_s)
        await super().shutdown(sockets)


def server_config(
    app: Any,
    limits: HttpSettings,
    *,
    host: str,
    port: int,
    drain_timeout_s: float,
    log_level: str = "info",
) -> uvicorn.Config:
    """The uvicorn configuration the service runs under, wherever it runs."""
    protocol = type("GuardedHttpProtocol", (GuardedHttpProtocol,), {"limits": limits})
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        log_level=log_level,
        timeout_keep_alive=limits.keep_alive_s,  # type: ignore[arg-type]
        timeout_graceful_shutdown=drain_timeout_s,  # type: ignore[arg-type]
    )
