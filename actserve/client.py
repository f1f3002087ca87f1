"""Python client for actserve, blocking (`Client`) or asyncio (`AsyncClient`), on httpx.

    from actserve.client import Client

    with Client("http://127.0.0.1:8000") as client:
        result = client.classify("clip.mp4", top_k=3, embedding=True)  # ClassifyResponse
        print(result.top_k[0].label, result.embedding.dim)

Results are the service's own pydantic models (`service.schemas`, importable from here too),
so a field the server documents on /docs is an attribute here; a video's embedding is one
`Embedding` {dim, values} from `classify(..., embedding=True)`, `embed` and a job's results.
Answers 429 (queue full) and 503 (not ready) are retried after their Retry-After, within the
bounds of a `Retry` policy; every other error answer raises an `APIError` subclass carrying
the JSON body.

Both clients share one core: each call is a generator (`_Calls`) that builds the request,
yields it, receives the response, yields a pause when it decides to retry, and returns the
parsed result. `Client` drives it with blocking I/O and `time.sleep`, `AsyncClient` with
`await`; neither knows an endpoint. A new endpoint is one `_Calls` method plus one line in
each client (as `embed` and `similarity` are).

Errors:

    ActserveError
    ├── TransportError                 no HTTP answer: refused, reset, unreadable
    │   └── Timeout                    no answer within the timeout
    └── APIError                       an error answer: status, code, message, request_id, details
        ├── BadRequestError            400 malformed parameters or body
        ├── UnauthorizedError          401 admin call without the right token
        ├── NotFoundError              404 unknown model, version or alias
        ├── ConflictError              409 an admin change against the routing, a finished job
        ├── UploadTooLargeError        413 over ACTSERVE_MAX_UPLOAD_BYTES
        ├── UnsupportedMediaTypeError  415 not a video, container or codec not allowed
        ├── UnusableVideoError         422 corrupt, over a limit, too costly to decode
        ├── OverloadedError            429 the queue is full (retried)
        └── ServerError                5xx
            ├── NotReadyError          503 starting, draining (retried)
            ├── ConnectionLimitError   503 the server is at its connection limit (retried)
            ├── VersionBrokenError     503 the version failed to load on the server
            └── DeadlineExceededError  504 the request's deadline passed

`Client()` with no URL reads `ACTSERVE_URL` (as the CLI does), else http://127.0.0.1:8000.
With OpenTelemetry installed, each request carries the current trace context (W3C
`traceparent`), so the service's spans join the caller's trace.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from service.jobs.schemas import JobResults, JobStatus
from service.schemas import (
    ClassifyResponse,
    Embedding,
    EmbedResponse,
    ModelPublic,
    ModelsPublic,
    Profile,
    ReadyPublic,
    SimilarityResponse,
)
from service.streams.schemas import StreamCreate, StreamEvent, StreamPublic, StreamsPublic

__all__ = [
    "APIError",
    "ActserveError",
    "AsyncClient",
    "BadRequestError",
    "ClassifyResponse",
    "Client",
    "ConflictError",
    "ConnectionLimitError",
    "DeadlineExceededError",
    "EmbedResponse",
    "Embedding",
    "Job",
    "JobFailed",
    "JobResults",
    "JobStatus",
    "ModelPublic",
    "ModelsPublic",
    "NotFoundError",
    "NotReadyError",
    "OverloadedError",
    "Profile",
    "ReadyPublic",
    "Retry",
    "ServerError",
    "SimilarityResponse",
    "StreamEvent",
    "StreamPublic",
    "Timeout",
    "TransportError",
    "UnauthorizedError",
    "UnsupportedMediaTypeError",
    "UnusableVideoError",
    "UploadTooLargeError",
    "VersionBrokenError",
]

logger = logging.getLogger("actserve.client")
T = TypeVar("T")

#: A video to classify: a path, its bytes, or a binary file object (read from where it is).
Video = str | os.PathLike[str] | bytes | IO[bytes]

DEFAULT_URL = "http://127.0.0.1:8000"
#: Decoding and batching a long video takes a while; connecting should not.
DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=10.0)


# ----------------------------------------------------------------------------------- errors


class ActserveError(Exception):
    """Base class of every error this client raises."""


class TransportError(ActserveError):
    """No HTTP answer: the connection was refused, reset, or the answer was unreadable."""


class Timeout(TransportError):
    """No answer within the client's timeout."""


class APIError(ActserveError):
    """The service answered with an error: its JSON body, field by field.

    `code` is the service's stable error name (`model_not_found`, `limit_exceeded`, ...),
    `details` the body's other fields (`limit`, `value`, `maximum`, `retry_after_s`, ...)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        request_id: str | None = None,
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.details = details or {}
        self.retry_after = retry_after


class BadRequestError(APIError):
    """400: malformed parameters or body."""


class UnauthorizedError(APIError):
    """401: an admin call without the right bearer token."""


class NotFoundError(APIError):
    """404: unknown model, version or alias, or a version that is not loaded."""


class ConflictError(APIError):
    """409: an admin change that contradicts the routing (unloading a routed version)."""


class UploadTooLargeError(APIError):
    """413: the video is larger than the server takes (`details['maximum']` bytes)."""


class UnsupportedMediaTypeError(APIError):
    """415: not a video, or a container or codec outside the server's allow-lists."""


class UnusableVideoError(APIError):
    """422: a video that cannot be used: corrupt, over a limit, too costly to decode."""


class OverloadedError(APIError):
    """429: the model's queue is full; `retry_after` says when to come back."""


class ServerError(APIError):
    """5xx: the service could not answer (not the request's fault)."""


class NotReadyError(ServerError):
    """503: the service is starting or draining, or has no default model."""


class ConnectionLimitError(ServerError):
    """503: the server holds as many connections as it takes (ACTSERVE_LIMIT_CONCURRENCY);
    it is up and ready, just full."""


class VersionBrokenError(ServerError):
    """503: the version asked for failed to load on the server (the others serve)."""


class DeadlineExceededError(ServerError):
    """504: the request's deadline on the server passed."""


ERRORS_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    404: NotFoundError,
    409: ConflictError,
    413: UploadTooLargeError,
    415: UnsupportedMediaTypeError,
    422: UnusableVideoError,
    429: OverloadedError,
    503: ServerError,
    504: DeadlineExceededError,
}

#: Where one status covers several situations, the body's `error` code tells them apart.
ERRORS_BY_CODE: dict[str, type[APIError]] = {
    "not_ready": NotReadyError,
    "too_many_connections": ConnectionLimitError,
    "version_broken": VersionBrokenError,
}


def error_from(response: httpx.Response) -> APIError:
    """The typed error for an error answer; a body that is not the service's JSON (a proxy's
    page) still gives the status, with the text as the message."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        body = {"error": "http_error", "message": response.text[:500] or response.reason_phrase}
    details = {k: v for k, v in body.items() if k not in ("error", "message", "request_id")}
    status = response.status_code
    cls = ERRORS_BY_CODE.get(body["error"]) or ERRORS_BY_STATUS.get(
        status, ServerError if status >= 500 else APIError
    )
    return cls(
        status,
        body["error"],
        str(body.get("message", "")),
        request_id=body.get("request_id") or response.headers.get("x-request-id"),
        details=details,
        retry_after=retry_after_seconds(response.headers.get("retry-after")),
    )


# ------------------------------------------------------------------------------------ retry


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: either delay-seconds or an HTTP date (RFC 9110, 10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True)
class Retry:
    """When to try a call again.

    An answer whose status is in `statuses` (429: the queue is full; 503: starting, draining
    or at the connection limit) is retried with full jitter, so that clients refused together
    do not come back together: after a random wait between its Retry-After and twice that,
    or, when it has none, between 0 and `backoff_s` doubling per attempt. At most `attempts`
    tries in all and at most `max_wait_s` of waiting in all; a wait that would pass that
    budget ends the retries at once: the error is raised with its `retry_after`, so the
    caller can decide. `Retry(attempts=1)` never retries; `jitter=False` waits the bounds.

        Client(url, retry=Retry(attempts=5, max_wait_s=60))
    """

    attempts: int = 3
    max_wait_s: float = 30.0
    backoff_s: float = 0.5
    statuses: frozenset[int] = frozenset({429, 503})
    jitter: bool = True
    #: Draws a wait in [low, high]; replaceable for reproducible tests.
    uniform: Callable[[float, float], float] = random.uniform

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.max_wait_s < 0 or self.backoff_s < 0:
            raise ValueError("Retry needs attempts >= 1, max_wait_s >= 0 and backoff_s >= 0")

    def delay(self, response: httpx.Response, attempt: int, waited: float) -> float | None:
        """Seconds to wait before try `attempt + 1`, or None to stop (`attempt` counts from 1)."""
        if response.status_code not in self.statuses or attempt >= self.attempts:
            return None
        given = retry_after_seconds(response.headers.get("retry-after"))
        low, high = (given, 2 * given) if given else (0.0, self.backoff_s * 2 ** (attempt - 1))
        if waited + low > self.max_wait_s:
            return None
        high = min(high, self.max_wait_s - waited)
        return self.uniform(low, high) if self.jitter else high


DEFAULT_RETRY = Retry()
NO_RETRY = Retry(attempts=1)


# ------------------------------------------------------------------------------------- core

#: One call: yields requests (answered with their responses) and pauses in seconds (answered
#: with None), returns the result.
Call = Generator[httpx.Request | float, httpx.Response | None, T]


class _Calls:
    """Every endpoint as a `Call`, with no I/O of its own: what both clients share."""

    def __init__(self, http: httpx.Client | httpx.AsyncClient, retry: Retry) -> None:
        self.http = http
        self.retry = retry

    def classify(
        self,
        video: Video,
        *,
        model: str | None,
        version: int | None,
        alias: str | None,
        top_k: int | None,
        embedding: bool,
        profile: Profile | str | None,
        per_clip: bool,
        segments: bool,
        segment_score: float | None,
        shots: bool,
        timeout: float | httpx.Timeout | None,
    ) -> Call[ClassifyResponse]:
        params: dict[str, Any] = {"model": model, "version": version, "alias": alias}
        params |= {"top_k": top_k, "profile": Profile(profile) if profile else None}
        params |= {"embedding": "true" if embedding else None}
        params |= {"per_clip": "true" if per_clip else None}
        params |= {"segments": "true" if segments else None, "segment_score": segment_score}
        params |= {"shots": "true" if shots else None}

        build = self._multipart("/classify", params, timeout)
        return self._call(build, _parse(ClassifyResponse), videos={"video": video})

    def embed(
        self,
        video: Video,
        *,
        model: str | None,
        version: int | None,
        alias: str | None,
        profile: Profile | str | None,
        per_window: bool,
        timeout: float | httpx.Timeout | None,
    ) -> Call[EmbedResponse]:
        params: dict[str, Any] = {"model": model, "version": version, "alias": alias}
        params |= {"profile": Profile(profile) if profile else None}
        params |= {"per_window": "true" if per_window else None}
        build = self._multipart("/embed", params, timeout)
        return self._call(build, _parse(EmbedResponse), videos={"video": video})

    def similarity(
        self,
        a: Video,
        b: Video,
        *,
        model: str | None,
        version: int | None,
        alias: str | None,
        profile: Profile | str | None,
        threshold: float | None,
        timeout: float | httpx.Timeout | None,
    ) -> Call[SimilarityResponse]:
        params: dict[str, Any] = {"model": model, "version": version, "alias": alias}
        params |= {"profile": Profile(profile) if profile else None, "threshold": threshold}
        build = self._multipart("/similarity", params, timeout)
        return self._call(build, _parse(SimilarityResponse), videos={"a": a, "b": b})

    def _multipart(
        self, path: str, params: dict[str, Any], timeout: float | httpx.Timeout | None
    ) -> Callable[[dict[str, tuple[str, IO[bytes] | bytes]]], httpx.Request]:
        """A builder of POST `path` with the call's videos as multipart file fields."""
        query = {k: str(v) for k, v in params.items() if v is not None}
        extra = {} if timeout is None else {"timeout": timeout}

        def build(parts: dict[str, tuple[str, IO[bytes] | bytes]]) -> httpx.Request:
            files = {field: (*part, "application/octet-stream") for field, part in parts.items()}
            return self.http.build_request("POST", path, params=query, files=files, **extra)

        return build

    def submit_job(
        self,
        video: Video,
        *,
        model: str | None,
        version: int | None,
        alias: str | None,
        profile: Profile | str | None,
        features: tuple[str, ...],
        top_k: int | None,
        segment_score: float | None,
        idempotency_key: str,
    ) -> Call[JobStatus]:
        params: dict[str, Any] = {"model": model, "version": version, "alias": alias}
        params |= {"profile": Profile(profile) if profile else None, "top_k": top_k}
        params |= {"features": ",".join(features), "segment_score": segment_score}
        query = {k: str(v) for k, v in params.items() if v is not None}

        def build(parts: dict[str, tuple[str, IO[bytes] | bytes]]) -> httpx.Request:
            files = {field: (*part, "application/octet-stream") for field, part in parts.items()}
            headers = {"Idempotency-Key": idempotency_key}
            return self.http.build_request(
                "POST", "/jobs", params=query, files=files, headers=headers
            )

        return self._call(build, _parse(JobStatus), videos={"video": video})

    def job_status(self, job_id: str) -> Call[JobStatus]:
        path = f"/jobs/{_segment(job_id)}"
        return self._call(lambda _: self.http.build_request("GET", path), _parse(JobStatus))

    def job_results(self, job_id: str, *, offset: int, limit: int) -> Call[JobResults]:
        path, params = f"/jobs/{_segment(job_id)}/results", {"offset": offset, "limit": limit}
        build = lambda _: self.http.build_request("GET", path, params=params)  # noqa: E731
        return self._call(build, _parse(JobResults))

    def cancel_job(self, job_id: str) -> Call[JobStatus]:
        path = f"/jobs/{_segment(job_id)}"
        return self._call(lambda _: self.http.build_request("DELETE", path), _parse(JobStatus))

    def list_models(self) -> Call[ModelsPublic]:
        return self._call(lambda _: self.http.build_request("GET", "/models"), _parse(ModelsPublic))

    def read_model(self, name: str) -> Call[ModelPublic]:
        path = f"/models/{_segment(name)}"
        return self._call(lambda _: self.http.build_request("GET", path), _parse(ModelPublic))

    def add_stream(self, definition: StreamCreate) -> Call[StreamPublic]:
        body = definition.model_dump(mode="json", exclude_none=True)
        build = lambda _: self.http.build_request("POST", "/streams", json=body)  # noqa: E731
        return self._call(build, _parse(StreamPublic))

    def list_streams(self) -> Call[StreamsPublic]:
        return self._call(
            lambda _: self.http.build_request("GET", "/streams"), _parse(StreamsPublic)
        )

    def read_stream(self, stream_id: str) -> Call[StreamPublic]:
        path = f"/streams/{_segment(stream_id)}"
        return self._call(lambda _: self.http.build_request("GET", path), _parse(StreamPublic))

    def remove_stream(self, stream_id: str) -> Call[None]:
        path = f"/streams/{_segment(stream_id)}"

        def parse(response: httpx.Response) -> None:
            if response.status_code >= 400:
                raise error_from(response)

        return self._call(lambda _: self.http.build_request("DELETE", path), parse)

    def health(self) -> Call[bool]:
        """True when the process answers /healthz; never retried."""
        request = self.http.build_request("GET", "/healthz")
        return self._call(lambda _: request, lambda r: r.status_code == 200, retry=NO_RETRY)

    def ready(self) -> Call[ReadyPublic]:
        """/readyz answers 200 or 503 with the same body: both are results, never retried."""
        request = self.http.build_request("GET", "/readyz")

        def parse(response: httpx.Response) -> ReadyPublic:
            if response.status_code == 503 and _is_json(response):
                return ReadyPublic.model_validate_json(response.content)
            return _parse(ReadyPublic)(response)

        return self._call(lambda _: request, parse, retry=NO_RETRY)

    def _call(
        self,
        build: Callable[[Any], httpx.Request],
        parse: Callable[[httpx.Response], T],
        *,
        videos: dict[str, Video] | None = None,
        retry: Retry | None = None,
    ) -> Call[T]:
        """Build and send, retry while the policy says so, then parse the last answer.
        `videos` are the call's uploads by multipart field."""
        retry = retry or self.retry
        uploads = {field: _Upload(video) for field, video in (videos or {}).items()}
        waited = 0.0
        for attempt in range(1, retry.attempts + 1):
            if not uploads:
                response = yield build(None)
            else:
                with ExitStack() as opened:
                    parts = {f: opened.enter_context(u.open(attempt)) for f, u in uploads.items()}
                    response = yield build(parts)
            assert response is not None
            delay = retry.delay(response, attempt, waited)
            if delay is None or not all(u.repeatable for u in uploads.values()):
                break
            logger.info(
                "%s %s answered %d; retrying in %.1f s (attempt %d of %d)",
                response.request.method,
                response.request.url.path,
                response.status_code,
                delay,
                attempt + 1,
                retry.attempts,
            )
            yield delay
            waited += delay
        return parse(response)


def _parse(model: type[BaseModel]) -> Callable[[httpx.Response], Any]:
    def parse(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise error_from(response)
        return model.model_validate_json(response.content)

    return parse


def _is_json(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").startswith("application/json")


def _segment(name: str) -> str:
    """A model name as one URL path segment (the store's names are plain; this keeps a
    stray '/' or '?' from reaching another endpoint)."""
    return quote(name, safe="")


class _Upload:
    """The video of one call, as the (filename, content) of its multipart part, readable
    again for each attempt: a path is reopened, a file object is read from where it stood
    when the call began (a stream that cannot seek is sent once, never retried)."""

    def __init__(self, video: Video) -> None:
        self.video = video
        self.start: int | None = None
        self.repeatable = True
        if isinstance(video, bytes):
            self.name = "video"
        elif isinstance(video, str | os.PathLike):
            self.name = Path(video).name
        else:
            self.name = Path(getattr(video, "name", None) or "video").name
            self.repeatable = video.seekable()
            self.start = video.tell() if self.repeatable else None

    @contextmanager
    def open(self, attempt: int) -> Iterator[tuple[str, IO[bytes] | bytes]]:
        video = self.video
        if isinstance(video, bytes):
            yield (self.name, video)
        elif isinstance(video, str | os.PathLike):
            with Path(video).open("rb") as f:
                yield (self.name, f)
        else:
            if attempt > 1 and self.start is not None:
                video.seek(self.start)
            yield (self.name, video)


# ---------------------------------------------------------------------------------- clients


def inject_trace_context(request: httpx.Request) -> None:
    """Add the current OpenTelemetry context (`traceparent`, `tracestate`) to the request's
    headers; nothing without OpenTelemetry or outside a span."""
    try:
        from opentelemetry import propagate
    except ImportError:
        return
    propagate.inject(request.headers)


def _transport_error(exc: httpx.HTTPError, base_url: httpx.URL) -> ActserveError:
    if isinstance(exc, httpx.TimeoutException):
        return Timeout(f"{base_url}: no answer in time ({type(exc).__name__})")
    return TransportError(f"{base_url}: {exc or type(exc).__name__}")


class _ClientBase:
    """What both clients are made of: an httpx client and the calls over it.

    `timeout` is seconds or an `httpx.Timeout` (default: 10 s to connect, 120 s otherwise);
    `retry` bounds the retries of 429 and 503 answers; `headers` go with every request;
    `transport` replaces the network (an httpx mock or ASGI transport of the client's kind)."""

    http_class: type[httpx.Client] | type[httpx.AsyncClient]

    def __init__(
        self,
        url: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: Retry = DEFAULT_RETRY,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.http = self.http_class(
            base_url=url or os.environ.get("ACTSERVE_URL") or DEFAULT_URL,
            timeout=timeout,
            headers=headers,
            transport=transport,  # type: ignore[arg-type]
        )
        self._calls = _Calls(self.http, retry)


class Client(_ClientBase):
    """A blocking client; safe to share between threads (it holds one httpx.Client)."""

    http_class = httpx.Client
    http: httpx.Client

    def classify(
        self,
        video: Video,
        *,
        model: str | None = None,
        version: int | None = None,
        alias: str | None = None,
        top_k: int | None = None,
        embedding: bool = False,
        profile: Profile | str | None = None,
        per_clip: bool = False,
        segments: bool = False,
        segment_score: float | None = None,
        shots: bool = False,
        timeout: float | httpx.Timeout | None = None,
    ) -> ClassifyResponse:
        """Classify a video (a path, bytes or a binary file object); the parameters are those
        of POST /classify (None: the server's default)."""
        return self._run(
            self._calls.classify(
                video,
                model=model,
                version=version,
                alias=alias,
                top_k=top_k,
                embedding=embedding,
                profile=profile,
                per_clip=per_clip,
                segments=segments,
                segment_score=segment_score,
                shots=shots,
                timeout=timeout,
            )
        )

    def embed(
        self,
        video: Video,
        *,
        model: str | None = None,
        version: int | None = None,
        alias: str | None = None,
        profile: Profile | str | None = None,
        per_window: bool = False,
        timeout: float | httpx.Timeout | None = None,
    ) -> EmbedResponse:
        """The video's float32 embedding (and each window's with `per_window`): POST /embed."""
        return self._run(
            self._calls.embed(
                video,
                model=model,
                version=version,
                alias=alias,
                profile=profile,
                per_window=per_window,
                timeout=timeout,
            )
        )

    def similarity(
        self,
        a: Video,
        b: Video,
        *,
        model: str | None = None,
        version: int | None = None,
        alias: str | None = None,
        profile: Profile | str | None = None,
        threshold: float | None = None,
        timeout: float | httpx.Timeout | None = None,
    ) -> SimilarityResponse:
        """The cosine similarity of two videos and `same_action`: POST /similarity."""
        return self._run(
            self._calls.similarity(
                a,
                b,
                model=model,
                version=version,
                alias=alias,
                profile=profile,
                threshold=threshold,
                timeout=timeout,
            )
        )

    def submit_job(
        self,
        video: Video,
        *,
        model: str | None = None,
        version: int | None = None,
        alias: str | None = None,
        profile: Profile | str | None = None,
        features: tuple[str, ...] = ("labels", "segments"),
        top_k: int | None = None,
        segment_score: float | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Submit a video as a durable job (POST /jobs); `job.wait()` follows it. Retries of
        the submit carry one Idempotency-Key (a new one unless given), so a retried upload
        never makes a second job."""
        status = self._run(
            self._calls.submit_job(
                video,
                model=model,
                version=version,
                alias=alias,
                profile=profile,
                features=tuple(features),
                top_k=top_k,
                segment_score=segment_score,
                idempotency_key=idempotency_key or uuid.uuid4().hex,
            )
        )
        return Job(self, status)

    def job(self, job_id: str) -> Job:
        """A submitted job by its id."""
        return Job(self, self._run(self._calls.job_status(job_id)))

    def list_models(self) -> ModelsPublic:
        """Every model, version and alias in the server's store, with their load state."""
        return self._run(self._calls.list_models())

    def read_model(self, name: str) -> ModelPublic:
        """One model with all its versions."""
        return self._run(self._calls.read_model(name))

    def add_stream(self, url: str, **definition: Any) -> StreamPublic:
        """Start a live stream (the fields of POST /streams: model, window_s, stride_s,
        events={high, low, windows, labels}, webhook_url, name)."""
        return self._run(self._calls.add_stream(StreamCreate(url=url, **definition)))

    def list_streams(self) -> list[StreamPublic]:
        return self._run(self._calls.list_streams()).streams

    def read_stream(self, stream_id: str) -> StreamPublic:
        return self._run(self._calls.read_stream(stream_id))

    def remove_stream(self, stream_id: str) -> None:
        self._run(self._calls.remove_stream(stream_id))

    def stream_events(self, stream_id: str) -> Iterator[StreamEvent]:
        """The stream's events as they happen (GET /streams/{id}/events), until it is removed."""
        path = f"/streams/{_segment(stream_id)}/events"
        try:
            with self.http.stream("GET", path, timeout=httpx.Timeout(None, connect=10)) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from(response)
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        yield StreamEvent.model_validate_json(line[5:])
        except httpx.HTTPError as exc:
            raise _transport_error(exc, self.http.base_url) from exc

    def health(self) -> bool:
        """Whether the server process answers: False when it does not (refused, timed out)."""
        try:
            return self._run(self._calls.health())
        except TransportError:
            return False

    def ready(self) -> ReadyPublic:
        """Whether the default model is loaded and warm (`.ready`), and what is loaded."""
        return self._run(self._calls.ready())

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self, call: Call[T]) -> T:
        try:
            step = next(call)
            while True:
                if isinstance(step, httpx.Request):
                    step = call.send(self._send(step))
                else:
                    time.sleep(step)
                    step = call.send(None)
        except StopIteration as done:
            return done.value
        finally:
            call.close()  # an error mid-call closes the video file the call opened

    def _send(self, request: httpx.Request) -> httpx.Response:
        inject_trace_context(request)
        try:
            return self.http.send(request)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, self.http.base_url) from exc


class JobFailed(ActserveError):
    """A job ended failed or cancelled; `status.error` says why (the sync API's error)."""

    def __init__(self, status: JobStatus) -> None:
        error = status.error
        why = f"{error.error}: {error.message}" if error else status.state
        super().__init__(f"job {status.id} {status.state}: {why}")
        self.status = status


class Job:
    """A submitted job: its last known `status`, and the calls that follow it."""

    def __init__(self, client: Client, status: JobStatus) -> None:
        self.client = client
        self.status = status

    @property
    def id(self) -> str:
        return self.status.id

    def refresh(self) -> JobStatus:
        self.status = self.client._run(self.client._calls.job_status(self.id))
        return self.status

    def wait(
        self,
        *,
        timeout: float | None = None,
        poll_s: float = 1.0,
        progress: Callable[[JobStatus], None] | None = None,
    ) -> JobResults:
        """Poll until the job finishes, calling `progress` with each status; its results
        (every window) once it succeeds, `JobFailed` if it failed or was cancelled, and
        `Timeout` after `timeout` seconds."""
        started = time.monotonic()
        while True:
            status = self.refresh()
            if progress is not None:
                progress(status)
            if status.state == "succeeded":
                return self.results()
            if status.state in ("failed", "cancelled"):
                raise JobFailed(status)
            if timeout is not None and time.monotonic() - started > timeout:
                raise Timeout(f"job {self.id} is still {status.state} after {timeout:g} s")
            time.sleep(poll_s)

    def results(self, *, page_windows: int = 1024) -> JobResults:
        """A succeeded job's results with every window (read a page at a time)."""
        calls = self.client._calls
        first = self.client._run(calls.job_results(self.id, offset=0, limit=page_windows))
        clips, windows = list(first.clips or []), list(first.windows or [])
        following = first.page.next_offset
        while following is not None:
            page = self.client._run(
                calls.job_results(self.id, offset=following, limit=page_windows)
            )
            clips += page.clips or []
            windows += page.windows or []
            following = page.page.next_offset
        return first.model_copy(
            update={
                "clips": clips if first.clips is not None else None,
                "windows": windows if first.windows is not None else None,
                "page": first.page.model_copy(
                    update={"offset": 0, "limit": first.page.windows, "next_offset": None}
                ),
            }
        )

    def cancel(self) -> JobStatus:
        self.status = self.client._run(self.client._calls.cancel_job(self.id))
        return self.status


class AsyncClient(_ClientBase):
    """The asyncio twin of `Client`: the same methods, awaited, and the same arguments."""

    http_class = httpx.AsyncClient
    http: httpx.AsyncClient

    async def classify(
        self,
        video: Video,
        *,
        model: str | None = None,
        version: int | None = None,
        alias: str | None = None,
        top_k: int | None = None,
        embedding: bool = False,
        profile: Profile | str | None = None,
        per_clip: bool = False,
        segments: bool = False,
        segment_score: float | None = None,
        shots: bool = False,
        timeout: float | httpx.Timeout | None = None,
    ) -> ClassifyResponse:
        """See `Client.classify`."""
        return await self._run(
            self._calls.classify(
                video,
                model=model,
                version=version,
                alias=alias,
                top_k=top_k,
                embedding=embedding,
                profile=profile,
                per_clip=per_clip,
                segments=segments,
                segment_score=segment_score,
                shots=shots,
                timeout=timeout,
            )
        )

    async def embed(
        self,
        video: Video,
        *,
        model: str | None = None,
        version: int | None = None,
        alias: str | None = None,
        profile: Profile | str | None = None,
        per_window: bool = False,
        timeout: float | httpx.Timeout | None = None,
    ) -> EmbedResponse:
        """See `Client.embed`."""
        return await self._run(
            self._calls.embed(
                video,
                model=model,
                version=version,
                alias=alias,
                profile=profile,
                per_window=per_window,
                timeout=timeout,
            )
        )

    async def similarity(
        self,
        a: Video,
        b: Video,
        *,
        model: str | None = None,
        version: int | None = None,
        alias: str | None = None,
        profile: Profile | str | None = None,
        threshold: float | None = None,
        timeout: float | httpx.Timeout | None = None,
    ) -> SimilarityResponse:
        """See `Client.similarity`."""
        return await self._run(
            self._calls.similarity(
                a,
                b,
                model=model,
                version=version,
                alias=alias,
                profile=profile,
                threshold=threshold,
                timeout=timeout,
            )
        )

    async def list_models(self) -> ModelsPublic:
        return await self._run(self._calls.list_models())

    async def read_model(self, name: str) -> ModelPublic:
        return await self._run(self._calls.read_model(name))

    async def add_stream(self, url: str, **definition: Any) -> StreamPublic:
        """See `Client.add_stream`."""
        return await self._run(self._calls.add_stream(StreamCreate(url=url, **definition)))

    async def list_streams(self) -> list[StreamPublic]:
        return (await self._run(self._calls.list_streams())).streams

    async def read_stream(self, stream_id: str) -> StreamPublic:
        return await self._run(self._calls.read_stream(stream_id))

    async def remove_stream(self, stream_id: str) -> None:
        await self._run(self._calls.remove_stream(stream_id))

    async def stream_events(self, stream_id: str) -> AsyncIterator[StreamEvent]:
        """The stream's events as they happen, an async iterator:

        async for event in client.stream_events(stream_id):
            print(event.type, event.label, event.score)
        """
        path = f"/streams/{_segment(stream_id)}/events"
        try:
            async with self.http.stream(
                "GET", path, timeout=httpx.Timeout(None, connect=10)
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise error_from(response)
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        yield StreamEvent.model_validate_json(line[5:])
        except httpx.HTTPError as exc:
            raise _transport_error(exc, self.http.base_url) from exc

    async def health(self) -> bool:
        try:
            return await self._run(self._calls.health())
        except TransportError:
            return False

    async def ready(self) -> ReadyPublic:
        return await self._run(self._calls.ready())

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _run(self, call: Call[T]) -> T:
        try:
            step = next(call)
            while True:
                if isinstance(step, httpx.Request):
                    step = call.send(await self._send(step))
                else:
                    await asyncio.sleep(step)
                    step = call.send(None)
        except StopIteration as done:
            return done.value
        finally:
            call.close()

    async def _send(self, request: httpx.Request) -> httpx.Response:
        inject_trace_context(request)
        try:
            return await self.http.send(request)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, self.http.base_url) from exc
