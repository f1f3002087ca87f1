"""OpenTelemetry: a server span per request continuing the caller's trace, its stages as
child spans, `traceparent` in and out, and the Python client sending it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.requests import Request
from starlette.responses import JSONResponse

from actserve.client import Client
from service.app import create_app
from tests.service.conftest import LiveServer, settings_for

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """The process's tracer provider (set once per process), recording in memory."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)
    yield EXPORTER


CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"


def test_a_request_is_a_span_of_the_callers_trace_with_its_stages(
    spans, store_root, videos
) -> None:
    with TestClient(create_app(settings_for(store_root))) as client:
        spans.clear()
        with videos["h264.mp4"].open("rb") as f:
            answer = client.post(
                "/classify",
                headers={"traceparent": TRACEPARENT, "X-Request-ID": "traced-1"},
                files={"video": ("clip.mp4", f, "video/mp4")},
            )
        assert answer.status_code == 200
    finished = spans.get_finished_spans()
    (server,) = [s for s in finished if s.kind == trace.SpanKind.SERVER]
    assert server.attributes["url.path"] == "/classify"
    assert format(server.context.trace_id, "032x") == CALLER_TRACE
    assert format(server.parent.span_id, "016x") == "00f067aa0ba902b7"
    attributes = dict(server.attributes)
    assert attributes["actserve.request_id"] == "traced-1"
    assert (attributes["actserve.model"], attributes["actserve.version"]) == ("tiny", 1)
    assert attributes["http.response.status_code"] == 200
    stages = [s for s in finished if "actserve.stage" in s.attributes]
    assert all(s.parent.span_id == server.context.span_id for s in stages)
    assert [s.name for s in stages] == ["upload", "decode wait", "decode", "queue", "inference"]
    assert all(s.end_time >= s.start_time for s in stages)
    assert stages[2].end_time - stages[2].start_time > 0  # decoding took measurable time
    # The answer names the trace, for callers without a tracer of their own.
    assert answer.headers["traceparent"].split("-")[1] == CALLER_TRACE


def test_errors_are_marked_on_the_span(spans, store_root, videos) -> None:
    with TestClient(create_app(settings_for(store_root))) as client:
        spans.clear()
        assert client.get("/models/nope").status_code == 404
    (server,) = [s for s in spans.get_finished_spans() if s.kind == trace.SpanKind.SERVER]
    assert server.attributes["actserve.error"] == "model_not_found"
    assert server.attributes["http.response.status_code"] == 404


def test_the_client_sends_the_current_trace(spans) -> None:
    seen: list[str | None] = []

    async def app(scope, receive, send) -> None:
        if scope["type"] == "http":
            seen.append(Request(scope, receive).headers.get("traceparent"))
            await JSONResponse({"status": "ok"})(scope, receive, send)

    tracer = trace.get_tracer("a-caller")
    with LiveServer(app=app) as live, Client(live.url) as client:
        with tracer.start_as_current_span("caller") as caller:
            assert client.health()
        assert client.health()  # outside a span: nothing to send
    trace_id = format(caller.get_span_context().trace_id, "032x")
    assert seen[0] is not None and seen[0].split("-")[1] == trace_id
    assert seen[1] is None
