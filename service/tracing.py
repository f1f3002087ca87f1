"""OpenTelemetry tracing, optional (`pip install 'actserve[otel]'`).

Each HTTP request is a server span that continues the caller's trace (W3C `traceparent` and
`tracestate` in the request): FastAPI's own (`FastAPI(telemetry=...)`), whenever a tracer
provider is configured. This module adds what only the service knows: under that span one
span per stage of the request's path (upload, decode wait, decode, queue and inference), the
request id, model, version and error code as attributes, and `traceparent` in the answer, so
that a caller without a tracer can still find the trace. The stages' lengths are the measured
ones (those of the `timings` field and the metrics); they are laid end to end from the start
of the request, so their order is exact and their start times approximate (a two-video
request's stages are the slower video's). The span carries the request id, model, version,
and error code.

Spans go to the process's tracer provider: the one `configure_tracing` installs when
`ACTSERVE_TRACE_EXPORTER=otlp` (the OTLP/HTTP exporter, configured by the standard
`OTEL_EXPORTER_OTLP_*` and `OTEL_SERVICE_NAME` variables), or whichever the application or
`opentelemetry-instrument` installed. Without OpenTelemetry the middleware is not mounted;
without a provider it passes requests through.
"""

from __future__ import annotations

import logging
import time
from enum import StrEnum
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.logs import record_of

logger = logging.getLogger("actserve.tracing")

#: The stages, in the order a request goes through them.
STAGES = ("upload", "decode_wait", "decode", "queue", "inference")


class TraceExporter(StrEnum):
    #: Use the process's tracer provider as it is (none: spans are not recorded).
    none = "none"
    #: Install a provider that batches spans to an OTLP/HTTP collector.
    otlp = "otlp"


def available() -> bool:
    try:
        import opentelemetry.trace  # noqa: F401
    except ImportError:
        return False
    return True


def configure_tracing(exporter: TraceExporter | str) -> None:
    """Install the tracer provider `exporter` asks for (nothing for `none`)."""
    if TraceExporter(exporter) is TraceExporter.none:
        return
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as error:
        raise RuntimeError(
            f"ACTSERVE_TRACE_EXPORTER=otlp needs OpenTelemetry: pip install 'actserve[otel]' "
            f"({error})"
        ) from None
    provider = TracerProvider(resource=Resource.create({"service.name": "actserve"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    logger.info("tracing to an OTLP collector (OTEL_EXPORTER_OTLP_* settings)")


class Tracing:
    """Adds to the request's server span (FastAPI's own: it continues the caller's trace from
    `traceparent`) the request id, model, version and error code, one child span per stage,
    and `traceparent` in the answer. A pure ASGI middleware inside `RequestLog`, whose record
    it reads when the answer starts (every stage is over by then)."""

    def __init__(self, app: ASGIApp) -> None:
        from opentelemetry import propagate, trace

        self.app = app
        self.propagate = propagate
        self.trace = trace

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        span = self.trace.get_current_span()
        if scope["type"] != "http" or not span.get_span_context().is_valid:
            await self.app(scope, receive, send)
            return
        started_ns = time.time_ns()

        async def traced(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._annotate(span, scope, started_ns)
                self.propagate.inject(MutableHeaders(scope=message))
            await send(message)

        await self.app(scope, receive, traced)

    def _annotate(self, span: Any, scope: Scope, started_ns: int) -> None:
        record = record_of(scope)
        if record is None:
            return
        span.set_attribute("actserve.request_id", record.request_id)
        for key, value in (
            ("actserve.model", record.model),
            ("actserve.version", record.version),
            ("actserve.error", record.error),
        ):
            if value is not None:
                span.set_attribute(key, value)
        tracer = self.trace.get_tracer("actserve")
        within = self.trace.set_span_in_context(span)
        at = started_ns
        for stage in STAGES:
            ms = record.stages_ms.get(stage)
            if ms is None:
                continue
            end = at + int(ms * 1e6)
            child = tracer.start_span(stage.replace("_", " "), context=within, start_time=at)
            child.set_attribute("actserve.stage", stage)
            child.end(end_time=end)
            at = end
