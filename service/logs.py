"""The service's logs: readable text by default, one JSON object a line with
`ACTSERVE_LOG_FORMAT=json`, and one line per request.

Every record logged while a request is being served carries its id (`request_id`, the
client's `X-Request-ID` or a new one), in the server and in the decode workers alike: the id
lives in a context variable that asyncio copies into the request's tasks, and the decode pool
hands it to the worker with each job (`job_context`). `RequestLog`, an ASGI middleware, writes
the request's line when its answer has gone out: method, path, status, the model and version
that served it, the error code, and the stage timings.

The formatting is the standard library's `logging` with python-json-logger for JSON.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The id of the request being served in this context ("-" outside one).
request_id_var: ContextVar[str] = ContextVar("actserve_request_id", default="-")
#: The log record of the HTTP request being served in this context (None outside one).
record_var: ContextVar[RequestRecord | None] = ContextVar("actserve_request_record", default=None)

access_logger = logging.getLogger("actserve.access")

#: Paths that probes and scrapers poll: logged at DEBUG, not once a second at INFO.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class LogFormat(StrEnum):
    text = "text"
    json = "json"


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record (`%(request_id)s`, the JSON field)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


@dataclass(frozen=True)
class LogSettings:
    """What a decode worker needs to log like the server."""

    format: LogFormat = LogFormat.text
    level: str = "info"


TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s"


def formatter(log_format: LogFormat | str) -> logging.Formatter:
    if LogFormat(log_format) is LogFormat.json:
        from pythonjsonlogger.json import JsonFormatter

        return JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(process)d",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            timestamp=False,
        )
    return logging.Formatter(TEXT_FORMAT)


_active: LogSettings | None = None


def active_settings() -> LogSettings | None:
    """How `configure_logging` set this process up (None: it was not called), for the decode
    workers to log alike."""
    return _active


def configure_logging(log_format: LogFormat | str = LogFormat.text, level: str = "info") -> None:
    """Send the root logger's records (uvicorn's, actserve's, the libraries') to stderr in
    `log_format`, each with its request id. Called by `actserve serve` and in each decode
    worker; idempotent."""
    global _active
    _active = LogSettings(LogFormat(log_format), level)
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "actserve", False)]:
        root.removeHandler(old)
    handler.actserve = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        # uvicorn's own handlers would print its lines a second time, unformatted.
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


def start_worker_logging(settings: LogSettings | None) -> None:
    if settings is not None:
        configure_logging(settings.format, settings.level)


@contextmanager
def job_context(request_id: str) -> Iterator[None]:
    """Inside a decode worker: the records of one job carry its request's id."""
    token = request_id_var.set(request_id)
    try:
        yield
    finally:
        request_id_var.reset(token)


@dataclass
class RequestRecord:
    """What the request's log line says, filled in on the way: the routes set the model and
    the stages, the error handler the code. Kept in the request's scope state (`log`)."""

    method: str
    path: str
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    status: int | None = None
    model: str | None = None
    version: int | None = None
    error: str | None = None
    stages_ms: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        found = {
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "model": self.model,
            "version": self.version,
            "error": self.error,
            "duration_ms": round((time.perf_counter() - self.started) * 1000, 1),
            **{f"{stage}_ms": ms for stage, ms in self.stages_ms.items()},
            **self.extra,
        }
        return {k: v for k, v in found.items() if v is not None}


def note_stages(stages_ms: dict[str, float]) -> None:
    """Put a request's stage timings (ms by stage) on its log line, from wherever the request
    is run (the engine knows the stages, not the HTTP layer); nothing outside a request."""
    record = record_var.get()
    if record is not None:
        record.stages_ms = stages_ms


def record_of(scope_or_request: Any) -> RequestRecord | None:
    """The request's log record (None outside `RequestLog`)."""
    state = getattr(scope_or_request, "scope", scope_or_request).get("state", {})
    return state.get("log")


class RequestLog:
    """One line per HTTP request, written when the answer has gone out (or the request
    failed without one). Inside `RequestIds`: it reads the id that middleware chose. A pure
    ASGI middleware: the messages pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        record = RequestRecord(scope["method"], scope["path"], state.get("request_id", "-"))
        state["log"] = record
        token = request_id_var.set(record.request_id)
        record_token = record_var.set(record)

        async def observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            if record.status is None:
                record.status = 500
            level = logging.DEBUG if record.path in QUIET_PATHS else logging.INFO
            fields = record.fields()
            text = " ".join(f"{k}={v}" for k, v in fields.items() if k not in ("method", "path"))
            access_logger.log(level, "%s %s %s", record.method, record.path, text, extra=fields)
            request_id_var.reset(token)
            record_var.reset(record_token)
