"""actserve.client against the real service on loopback (every /classify parameter, typed
results and errors, a real 429 retried) and against a scripted server for the retry, timeout
and transport mechanics."""

from __future__ import annotations

import asyncio
import io
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from actserve.client import (
    APIError,
    AsyncClient,
    BadRequestError,
    ClassifyResponse,
    Client,
    ConnectionLimitError,
    Embedding,
    EmbedResponse,
    NotFoundError,
    NotReadyError,
    OverloadedError,
    Retry,
    ServerError,
    SimilarityResponse,
    Timeout,
    TransportError,
    UnsupportedMediaTypeError,
    UnusableVideoError,
    VersionBrokenError,
    retry_after_seconds,
)
from tests.service.conftest import LABELS, LiveServer, metric, settings_for


@pytest.fixture(scope="module")
def server(store_root) -> Iterator[LiveServer]:
    with LiveServer(settings_for(store_root)) as live:
        yield live


# ------------------------------------------------------------------------ the real service


def test_a_path_bytes_and_a_file_object_get_the_same_answer(server, videos) -> None:
    path = videos["h264.mp4"]
    with Client(server.url) as client:
        by_path = client.classify(path, top_k=3)
        by_bytes = client.classify(path.read_bytes(), top_k=3)
        with path.open("rb") as f:
            by_file = client.classify(f, top_k=3)
    assert isinstance(by_path, ClassifyResponse)
    assert by_path.model == "tiny" and len(by_path.top_k) == 3
    assert {e.label for e in by_path.top_k} <= set(LABELS)
    for other in (by_bytes, by_file):
        assert [(e.index, round(e.score, 6)) for e in other.top_k] == [
            (e.index, round(e.score, 6)) for e in by_path.top_k
        ]


def test_every_classify_parameter_reaches_the_server(server, videos) -> None:
    path = videos["h264.mp4"]
    with Client(server.url) as client:
        pinned = client.classify(path, model="tiny", version=1, top_k=1)
        with pytest.raises(NotFoundError, match="version 2 of 'tiny' is not loaded"):
            client.classify(path, model="tiny", version=2)
        aliased = client.classify(path, model="tiny", alias="stable", profile="fast")
        full = client.classify(path, embedding=True, per_clip=True, profile="accurate", top_k=2)
        segmented = client.classify(path, segments=True, segment_score=0.0, profile="accurate")
    assert (pinned.version, len(pinned.top_k)) == (1, 1)
    assert aliased.version == 1 and aliased.profile == "fast" and aliased.video.views == 1
    # The answer is the profile's 6 views (2 clips × 3 crops); the windows come beside it.
    assert full.profile == "accurate" and full.video.views == 6 and len(full.clips or []) > 2
    assert full.embedding is not None and full.embedding.dim == len(full.embedding.values)
    assert full.clips and all(len(c.top_k) == 2 and c.end_s > c.start_s for c in full.clips)
    # segment_score 0: every window belongs to a segment, so the segments cover all windows
    assert segmented.clips is None and segmented.segments
    assert sum(s.windows for s in segmented.segments) == len(full.clips)


def test_embed_and_similarity_are_typed_and_match_classify(server, videos) -> None:
    path, other = videos["h264.mp4"], videos["vp9.webm"]
    with Client(server.url) as client:
        embedded = client.embed(path, profile="fast")
        windowed = client.embed(path, profile="fast", per_window=True)
        classified = client.classify(path, profile="fast", embedding=True)
        with other.open("rb") as f:
            compared = client.similarity(path, f, threshold=0.5)
        itself = client.similarity(path.read_bytes(), path)
        with pytest.raises(UnsupportedMediaTypeError, match="video 'b'"):
            client.similarity(path, b"not a video at all")
    assert isinstance(embedded, EmbedResponse) and isinstance(classified.embedding, Embedding)
    # One shape for a video's embedding, whichever route answered it (issue 26).
    assert type(embedded.embedding) is type(classified.embedding)
    assert embedded.embedding.dim == len(embedded.embedding.values)
    assert embedded.embedding.values == pytest.approx(classified.embedding.values, rel=1e-5)
    assert embedded.windows is None and windowed.windows and windowed.windows[0].window == 0
    assert isinstance(compared, SimilarityResponse) and compared.threshold_source == "request"
    assert itself.similarity == pytest.approx(1.0, abs=1e-6) and itself.same_action

    async def run() -> SimilarityResponse:
        async with AsyncClient(server.url) as client:
            await client.embed(path)
            return await client.similarity(path, other, threshold=0.5)

    assert asyncio.run(run()).similarity == pytest.approx(compared.similarity, abs=1e-6)


def test_models_health_and_readiness_are_typed(server) -> None:
    with Client(server.url) as client:
        models = client.list_models()
        tiny = client.read_model("tiny")
        assert client.health() is True
        ready = client.ready()
    assert models.default_model == "tiny" and [m.name for m in models.models] == ["tiny"]
    assert tiny.aliases == {"stable": 1} and [v.version for v in tiny.versions] == [1, 2]
    assert ready.ready and ready.loaded == ["tiny@1"]


def test_error_answers_raise_typed_errors_with_the_json_body(server, videos) -> None:
    path = videos["h264.mp4"]
    with Client(server.url, headers={"X-Request-ID": "client-test-1"}) as client:
        with pytest.raises(NotFoundError) as missing:
            client.classify(path, model="nope")
        with pytest.raises(BadRequestError, match="not both"):
            client.classify(path, version=1, alias="stable")
        with pytest.raises(BadRequestError, match="top_k"):
            client.classify(path, top_k=0)
        with pytest.raises(UnsupportedMediaTypeError) as not_video:
            client.classify(b"\x00not a video" * 500)
        with pytest.raises(NotFoundError):
            client.read_model("nope")
    assert missing.value.status == 404 and missing.value.code == "model_not_found"
    assert missing.value.request_id == "client-test-1" and "nope" in missing.value.message
    assert not_video.value.code == "not_a_video"


def test_a_limit_comes_back_with_its_fields(store_root, videos) -> None:
    settings = settings_for(store_root, max_duration_s=0.5, decode_workers=1)
    with (
        LiveServer(settings) as small,
        Client(small.url) as client,
        pytest.raises(UnusableVideoError) as over,
    ):
        client.classify(videos["h264.mp4"])
    assert over.value.code == "limit_exceeded"
    assert over.value.details["limit"] == "duration" and over.value.details["maximum"] == 0.5


def test_the_async_client_answers_like_the_blocking_one(server, videos) -> None:
    path = videos["vp9.webm"]

    async def main():
        async with AsyncClient(server.url) as client:
            with pytest.raises(NotFoundError):
                await client.classify(path, model="nope")
            return await asyncio.gather(
                client.classify(path, top_k=2, per_clip=True),
                client.classify(path.read_bytes(), top_k=2, per_clip=True),
                client.list_models(),
                client.ready(),
                client.health(),
            )

    by_path, by_bytes, models, ready, healthy = asyncio.run(main())
    with Client(server.url) as client:
        blocking = client.classify(path, top_k=2, per_clip=True)
    assert [e.index for e in by_path.top_k] == [e.index for e in blocking.top_k]
    assert by_bytes.clips is not None and len(by_bytes.clips) == len(blocking.clips)
    assert models.default_model == "tiny" and ready.ready and healthy


def test_a_real_429_is_retried_after_its_retry_after(store_root, videos) -> None:
    """A 6-view queue holds one request's views for the 1.5 s batch delay, so the other of two
    concurrent requests is refused with 429 (Retry-After ≥ 1 s) and gets in on a retry."""
    settings = settings_for(
        store_root, max_queue_views=6, max_delay_ms=1500, max_batch_views=64, delay_when_idle=True
    )
    path = videos["h264.mp4"]
    with LiveServer(settings) as live:

        async def main():
            async with AsyncClient(live.url, retry=Retry(attempts=6, max_wait_s=30)) as client:
                return await asyncio.gather(client.classify(path), client.classify(path))

        answers = asyncio.run(main())
        with Client(live.url) as client:
            text = client.http.get("/metrics").text
    assert [a.video.views for a in answers] == [6, 6]
    assert metric(text, "actserve_rejections_total", reason="overloaded") >= 1
    served = dict(endpoint="/classify", model="tiny", version="1", status="200")
    assert metric(text, "actserve_requests_total", **served) == 2


# ------------------------------------------------------------- a scripted server: mechanics

EXAMPLE = ClassifyResponse.model_config["json_schema_extra"]["examples"][0]


class Scripted:
    """An ASGI app that answers each request with the next scripted answer, records when
    each request came and how many body bytes it carried."""

    def __init__(self, *answers: tuple[int, dict[str, str], object]) -> None:
        self.answers = list(answers)
        self.arrivals: list[float] = []
        self.body_sizes: list[int] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        self.body_sizes.append(len(await request.body()))
        self.arrivals.append(time.monotonic())
        status, headers, body = self.answers.pop(0) if self.answers else (500, {}, "no script")
        if isinstance(body, float):  # a pause: the answer comes too late
            await asyncio.sleep(body)
            body = EXAMPLE
        if isinstance(body, str):
            response = Response(body, status, headers, media_type="text/html")
        else:
            response = JSONResponse(body, status, headers)
        await response(scope, receive, send)


def overloaded(retry_after: str) -> tuple[int, dict[str, str], object]:
    body = {"error": "overloaded", "message": "queue full", "request_id": "r1"}
    return 429, {"Retry-After": retry_after}, {**body, "retry_after_s": retry_after}


NOT_READY = (503, {}, {"error": "not_ready", "message": "starting", "request_id": "r2"})


def test_429s_are_retried_after_retry_after_with_the_whole_video_each_time() -> None:
    app = Scripted(overloaded("1"), overloaded("1"), (200, {}, EXAMPLE))
    video = io.BytesIO(b"header" + b"\1" * 10_000)
    video.seek(6)  # read from where the stream stands, on every attempt
    with LiveServer(app=app) as live, Client(live.url) as client:
        answer = client.classify(video)
    assert answer.request_id == EXAMPLE["request_id"] and answer.top_k[0].label == "moving right"
    assert len(app.arrivals) == 3 and len(set(app.body_sizes)) == 1
    assert app.body_sizes[0] > 10_000
    gaps = [b - a for a, b in zip(app.arrivals, app.arrivals[1:], strict=False)]
    assert min(gaps) >= 0.9  # each retry waited out the Retry-After of 1 s


def test_an_http_date_retry_after_is_honoured_in_seconds() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("Thu, 01 Jan 2026 12:00:05 GMT", now=now) == 5.0
    assert retry_after_seconds("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert retry_after_seconds("7", now=now) == 7.0
    assert retry_after_seconds("soon", now=now) is None


def test_503_without_retry_after_backs_off_and_gives_up_after_the_attempts() -> None:
    app = Scripted(NOT_READY, NOT_READY, NOT_READY, (200, {}, EXAMPLE))
    retry = Retry(attempts=3, backoff_s=0.05)
    with (
        LiveServer(app=app) as live,
        Client(live.url, retry=retry) as client,
        pytest.raises(NotReadyError) as error,
    ):
        client.classify(b"video")
    assert len(app.arrivals) == 3 and isinstance(error.value, ServerError)
    assert error.value.code == "not_ready" and error.value.request_id == "r2"


def test_a_retry_after_past_the_wait_budget_is_not_waited_for() -> None:
    app = Scripted(overloaded("120"), (200, {}, EXAMPLE))
    with (
        LiveServer(app=app) as live,
        Client(live.url, retry=Retry(max_wait_s=30)) as client,
        pytest.raises(OverloadedError) as error,
    ):
        client.classify(b"video")
    assert len(app.arrivals) == 1
    assert error.value.retry_after == 120 and error.value.details["retry_after_s"] == "120"


def test_a_stream_that_cannot_seek_is_not_retried() -> None:
    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self.data = io.BytesIO(b"\1" * 5000)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            chunk = self.data.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    app = Scripted(overloaded("1"), (200, {}, EXAMPLE))
    with (
        LiveServer(app=app) as live,
        Client(live.url) as client,
        pytest.raises(OverloadedError),
    ):
        client.classify(Pipe())
    assert len(app.arrivals) == 1


def test_retries_work_the_same_in_the_async_client() -> None:
    app = Scripted(NOT_READY, overloaded("1"), (200, {}, EXAMPLE))

    async def main():
        retry = Retry(backoff_s=0.05)
        async with AsyncClient(live.url, retry=retry) as client:
            return await client.classify(b"\1" * 1000)

    with LiveServer(app=app) as live:
        answer = asyncio.run(main())
    assert answer.model == EXAMPLE["model"] and len(app.arrivals) == 3


def test_a_slow_answer_times_out_and_a_closed_port_is_a_transport_error() -> None:
    app = Scripted((200, {}, 1.0))
    with (
        LiveServer(app=app) as live,
        Client(live.url, timeout=0.3) as client,
        pytest.raises(Timeout),
    ):
        client.classify(b"video")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with Client(f"http://127.0.0.1:{port}") as client:
        assert client.health() is False  # down is an answer, not an error
        with pytest.raises(TransportError):
            client.list_models()


def test_an_answer_that_is_not_the_services_json_still_raises_by_status() -> None:
    app = Scripted((502, {}, "<html>bad gateway</html>"), (418, {}, "teapot"))
    with LiveServer(app=app) as live, Client(live.url) as client:
        with pytest.raises(ServerError) as gateway:
            client.list_models()
        with pytest.raises(APIError) as teapot:
            client.list_models()
    assert gateway.value.status == 502 and gateway.value.code == "http_error"
    assert "bad gateway" in gateway.value.message
    assert teapot.value.status == 418 and type(teapot.value) is APIError


def test_full_jitter_spreads_retries_between_retry_after_and_twice_it() -> None:
    """Eight clients refused together must not come back together."""
    refused = httpx.Response(429, headers={"Retry-After": "2"})
    waits = [Retry().delay(refused, attempt=1, waited=0.0) for _ in range(200)]
    assert all(2.0 <= w <= 4.0 for w in waits) and max(waits) - min(waits) > 1.0
    bare = httpx.Response(503)
    backoff = Retry(backoff_s=0.5, attempts=5)
    assert all(0 <= backoff.delay(bare, attempt=3, waited=0) <= 2.0 for _ in range(100))
    assert Retry(jitter=False).delay(refused, attempt=1, waited=0) == 4.0
    budget = Retry(max_wait_s=3.0, uniform=lambda low, high: high)
    assert budget.delay(refused, attempt=1, waited=0.5) == 2.5  # capped by what is left
    assert budget.delay(refused, attempt=1, waited=1.5) is None


def test_the_url_comes_from_actserve_url(monkeypatch) -> None:
    monkeypatch.setenv("ACTSERVE_URL", "http://10.1.2.3:9000")
    assert str(Client().http.base_url) == "http://10.1.2.3:9000"
    assert str(Client("http://h:1").http.base_url) == "http://h:1"
    monkeypatch.delenv("ACTSERVE_URL")
    assert str(Client().http.base_url) == "http://127.0.0.1:8000"


def test_503s_are_told_apart_by_their_code() -> None:
    full = (503, {"Retry-After": "1"}, {"error": "too_many_connections", "message": "full"})
    broken = (503, {}, {"error": "version_broken", "message": "failed to load"})
    crashed = (503, {}, {"error": "decoder_crashed", "message": "died twice"})
    app = Scripted(full, broken, crashed)
    with LiveServer(app=app) as live, Client(live.url, retry=Retry(attempts=1)) as client:
        with pytest.raises(ConnectionLimitError) as limit:
            client.list_models()
        with pytest.raises(VersionBrokenError):
            client.list_models()
        with pytest.raises(ServerError) as other:
            client.list_models()
    assert not isinstance(limit.value, NotReadyError) and limit.value.retry_after == 1
    assert type(other.value) is ServerError and other.value.code == "decoder_crashed"


def test_the_async_health_is_false_when_the_server_is_down() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def main() -> bool:
        async with AsyncClient(f"http://127.0.0.1:{port}") as client:
            return await client.health()

    assert asyncio.run(main()) is False


def test_the_client_imports_without_the_serving_stack() -> None:
    """An application that only calls the service needs httpx and pydantic, not torch, ONNX
    Runtime, OpenCV, PyAV, numpy or the web framework: the client imports with them all
    blocked."""
    import subprocess
    import sys

    blocked = ["torch", "onnxruntime", "cv2", "av", "numpy", "fastapi", "starlette", "pebble"]
    script = (
        "import sys\n"
        f"for name in {blocked!r}:\n"
        "    sys.modules[name] = None  # an import of it raises ImportError\n"
        "from actserve.client import Client, ClassifyResponse\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
