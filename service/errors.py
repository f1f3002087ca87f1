"""Errors the service raises on purpose, one tree for the whole request path, and the one
table that maps them to HTTP.

ServiceError                          every error the service raises on purpose
├── RequestError                      the request cannot be served as asked (a 4xx)
│   ├── BadRequest                    malformed parameters or body
│   ├── Unauthorized                  missing or wrong admin token, or no API key
│   ├── Forbidden                     an API key that is not accepted
│   ├── ModelNotLoaded                the model, version or alias is not served here
│   ├── UrlNotAllowed                 a URL refused by its scheme, the allow-list or SSRF rules
│   ├── StreamNotFound                no live stream has this id
│   ├── TooManyStreams                ACTSERVE_STREAMS_MAX streams run already
│   ├── Conflict                      an action that contradicts the state (routing, a job's)
│   ├── RemoteUnavailable             a job's input or output URI failed after every retry
│   ├── JobNotFound                   no job with that id (unknown, or past its retention)
│   ├── ModelLoadError                a version that cannot run here (no usable artifact or device)
│   ├── UnsupportedMediaType          neither multipart with a `video` field nor a video/* body
│   ├── UploadTooLarge                the body exceeds max_upload_bytes (reading stops there)
│   ├── RequestTimeout                the body stalled, or did not arrive before the deadline
│   ├── Overloaded                    the model's queue is full: retry after `retry_after` s
│   └── VideoError                    the upload cannot become model input
│       ├── NotAVideo                 FFmpeg finds no video container in it (random bytes, an image)
│       │   └── AudioOnly             a media file with sound but no video stream
│       ├── ContainerNotAllowed       a real container format outside the allow-list
│       ├── UnsupportedCodec          a video codec outside the allow-list or without a decoder
│       ├── CorruptVideo              truncated or damaged data (unreadable index, broken packets)
│       │   └── NoDecodableFrames     not a single frame decodes
│       ├── LimitExceeded             over a limit: `limit` names it, with `value` and `maximum`
│       ├── TooFewFrames              fewer frames than the model needs (flow needs two)
│       └── DecodeFailed              the decode worker failed the job (see its subclasses)
│           ├── DecodeTimeout         the job ran past its time limit and was stopped
│           └── DecodeOutOfMemory     the job hit the worker's memory limit
├── NotReady                          starting, draining, or no default model
├── InsufficientStorage               the jobs directory holds its limit of uploads
├── VersionBroken                     the version (or model) failed to load here; others serve
├── WorkerCrashed                     the decode worker died, twice (a server fault until proven)
├── DeadlineExceeded                  the request ran out of time
├── ClientDisconnected                the client left; its queued work was dropped
└── InferenceFailed                   the runtime raised (a server fault, not the input's)

Decoding runs in worker processes, so every error here survives pickling: the base class
pickles an error as its class, message and attributes, whatever its constructor takes. Inner
code raises these; `service/app.py` turns them into JSON responses through `status_for`.
Model-store errors (`model_store.StoreError`) and the window index's
(`window_index.WindowIndexError`) map here too. `error_body` is the one JSON body of every
refusal (the app's, the HTTP server's own, the drain's, in both protocols), and
`openapi_errors` the routes' OpenAPI status tables, both read from here.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException

from model_store import (
    AliasNotFoundError,
    IntegrityError,
    InvalidNameError,
    ModelNotFoundError,
    StoreError,
    VersionInUseError,
    VersionNotFoundError,
)
from window_index import InvalidQuery, NotIndexed, WindowIndexError, WrongSpace


def _rebuild(cls: type[ServiceError], message: str, state: dict[str, Any]) -> ServiceError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.6g}"


class ServiceError(Exception):
    """Base class of every error the service raises on purpose."""

    #: A stable name for clients, the `error` field of the JSON body.
    code = "service_error"
    #: Answer with `Connection: close`: the request's body was left unread.
    close_connection = False

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), str(self), dict(self.__dict__)))

    def details(self) -> dict[str, Any]:
        """Extra fields of the JSON body."""
        return {}


class RequestError(ServiceError):
    """The request cannot be served as asked: the client's to fix (a 4xx)."""

    code = "bad_request"


class BadRequest(RequestError):
    """Malformed parameters or body."""

    code = "bad_request"


class Unauthorized(RequestError):
    """A missing or wrong admin bearer token."""

    code = "unauthorized"


class Forbidden(RequestError):
    """An API key that is not among the configured ones."""

    code = "forbidden"


class ModelNotLoaded(RequestError):
    """The model, version or alias is not served by this process."""

    code = "model_not_found"


class Conflict(RequestError):
    """An admin action that contradicts the current routing."""

    code = "conflict"


class UrlNotAllowed(RequestError):
    """A URL the service will not open: its scheme, the operator's allow-list or the address
    it resolves to (service/net_policy.py)."""

    code = "url_not_allowed"


class StreamNotFound(RequestError):
    """No live stream has this id."""

    code = "stream_not_found"


class TooManyStreams(RequestError):
    """The service already runs ACTSERVE_STREAMS_MAX streams."""

    code = "too_many_streams"


class RemoteUnavailable(RequestError):
    """A job's input could not be fetched (or its results written) at its URI after every
    retry: the object is missing, access was denied, or the server kept failing."""

    code = "remote_unavailable"


class JobNotFound(RequestError):
    """No job with that id: never submitted, or removed after its retention."""

    code = "job_not_found"


class ModelLoadError(RequestError):
    """The version exists but cannot run on this machine: no artifact this service can load,
    or the device the settings demand is unusable."""

    code = "model_load_failed"


class UnsupportedMediaType(RequestError):
    """The body is neither multipart with a `video` field nor a video/* upload."""

    code = "unsupported_media_type"


class UploadTooLarge(RequestError):
    """The body exceeds max_upload_bytes; the service stopped reading it."""

    code = "upload_too_large"

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit

    def details(self) -> dict[str, Any]:
        return {"limit": "max_upload_bytes", "maximum": self.limit}


class RequestTimeout(RequestError):
    """The client stopped sending its body (or sent it too slowly for the request's
    deadline): the connection is closed after the answer, the rest is never read."""

    code = "request_timeout"
    close_connection = True


class Overloaded(RequestError):
    """Too much work is already waiting (uploads, the decode backlog or the model's queue):
    retry after `retry_after` seconds (Retry-After)."""

    code = "overloaded"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def details(self) -> dict[str, Any]:
        return {"retry_after_s": self.retry_after}


class VideoError(RequestError):
    """The uploaded file cannot become the model's input."""

    code = "bad_video"


class NotAVideo(VideoError):
    """No video container FFmpeg can read: random bytes, text, a still image."""

    code = "not_a_video"


class AudioOnly(NotAVideo):
    """A media file with audio streams and no video stream."""

    code = "audio_only"


class ContainerNotAllowed(VideoError):
    """The container format is real but outside the allow-list."""

    code = "container_not_allowed"

    def __init__(self, container: str, allowed: tuple[str, ...]) -> None:
        super().__init__(
            f"container format {container!r} is not allowed (allowed: {', '.join(allowed)})"
        )
        self.container = container
        self.allowed = allowed


class UnsupportedCodec(VideoError):
    """The video codec is outside the allow-list, or this build has no decoder for it."""

    code = "unsupported_codec"

    def __init__(self, codec: str, allowed: tuple[str, ...]) -> None:
        super().__init__(f"video codec {codec!r} is not supported (allowed: {', '.join(allowed)})")
        self.codec = codec
        self.allowed = allowed


class CorruptVideo(VideoError):
    """Truncated or damaged data: the index is unreadable or too many packets are broken."""

    code = "corrupt_video"


class NoDecodableFrames(CorruptVideo):
    """The container opens but not one frame decodes."""

    code = "no_decodable_frames"


class LimitExceeded(VideoError):
    """A value read from the file (or planned from it) is over a configured limit."""

    code = "limit_exceeded"

    def __init__(
        self, limit: str, value: float, maximum: float, unit: str = "", detail: str = ""
    ) -> None:
        suffix = f" {unit}" if unit else ""
        super().__init__(
            f"{limit} over the limit: {_number(value)}{suffix} > {_number(maximum)}{suffix}"
            + detail
        )
        self.limit = limit
        self.value = value
        self.maximum = maximum
        self.unit = unit

    def details(self) -> dict[str, Any]:
        return {"limit": self.limit, "value": self.value, "maximum": self.maximum}


class TooFewFrames(VideoError):
    """The video has fewer frames than the model needs: optical flow needs two."""

    code = "too_few_frames"

    def __init__(self, frames: int, minimum: int, needed_by: str) -> None:
        super().__init__(f"{needed_by} needs at least {minimum} frames; the video has {frames}")
        self.frames = frames
        self.minimum = minimum

    def details(self) -> dict[str, Any]:
        return {"limit": "min_frames", "value": self.frames, "minimum": self.minimum}


class DecodeFailed(VideoError):
    """The decode worker failed the job; the pool has replaced it."""

    code = "decode_failed"


class DecodeTimeout(DecodeFailed):
    """The decode ran past its time limit: the pool's (its worker was killed) or the one its
    size allows (the worker stopped it)."""

    code = "decode_timeout"

    def __init__(self, seconds: float, why: str = "") -> None:
        super().__init__(f"decoding took longer than {seconds:.3g} s{why} and was stopped")
        self.seconds = seconds

    def details(self) -> dict[str, Any]:
        return {"limit": "decode_timeout_s", "maximum": self.seconds}


class DecodeOutOfMemory(DecodeFailed):
    """The decode needed more memory than a worker may use."""

    code = "decode_out_of_memory"

    def __init__(self, limit_bytes: int | None) -> None:
        limit = f" of {limit_bytes / 2**20:.0f} MiB" if limit_bytes else ""
        super().__init__(f"decoding ran out of memory (worker limit{limit})")
        self.limit_bytes = limit_bytes

    def details(self) -> dict[str, Any]:
        return {"limit": "decode_memory_mb", "maximum": self.limit_bytes}


class NotReady(ServiceError):
    """The service is starting or draining, the version is not loaded yet, or no default
    model is configured."""

    code = "not_ready"


class InsufficientStorage(ServiceError):
    """The jobs directory holds as many upload bytes as it may (ACTSERVE_JOBS_MAX_DISK_BYTES)."""

    code = "insufficient_storage"


class VersionBroken(ServiceError):
    """The version a request asks for failed to load in this process (damaged files, no
    usable runtime); the other versions serve. Fixed by repairing or re-publishing it, then
    POST /admin/reload."""

    code = "version_broken"


class WorkerCrashed(ServiceError):
    """The decode worker died (a signal or an abnormal exit) on a job and again on a fresh
    worker. An idle worker killed from outside or by the kernel's OOM killer is not the
    upload's fault, so the first death is retried and the second is a 503, not a 422."""

    code = "decoder_crashed"

    def __init__(self, exitcode: int | None, *, again: bool = False) -> None:
        twice = " twice, on a fresh worker too" if again else ""
        super().__init__(f"the decode worker died{twice} (exit code {exitcode})")
        self.exitcode = exitcode


class DeadlineExceeded(ServiceError):
    """The request ran past its deadline (ACTSERVE_REQUEST_TIMEOUT_S)."""

    code = "deadline_exceeded"


class ClientDisconnected(ServiceError):
    """The client closed the connection; its queued decode and inference were dropped."""

    code = "client_disconnected"


class InferenceFailed(ServiceError):
    """The runtime raised: a server fault, not the input's."""

    code = "inference_failed"


#: Status by class; `status_for` walks the MRO, so the most specific row wins and a subclass
#: without a row takes its parent's.
STATUS: dict[type[Exception], int] = {
    RequestError: 400,
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    ModelNotLoaded: 404,
    Conflict: 409,
    UrlNotAllowed: 403,
    StreamNotFound: 404,
    TooManyStreams: 409,
    RemoteUnavailable: 424,  # Failed Dependency: the job's input or output store
    JobNotFound: 404,
    UploadTooLarge: 413,
    RequestTimeout: 408,
    ModelLoadError: 422,
    UnsupportedMediaType: 415,
    Overloaded: 429,
    # What the upload is: not a video, or a container/codec we do not take -> 415;
    # a video we cannot use (damaged, over a limit, too costly to decode) -> 422.
    VideoError: 422,
    NotAVideo: 415,
    ContainerNotAllowed: 415,
    UnsupportedCodec: 415,
    NotReady: 503,
    InsufficientStorage: 507,
    VersionBroken: 503,
    WorkerCrashed: 503,
    DeadlineExceeded: 504,
    ClientDisconnected: 499,  # nginx's code: the client is gone, the metrics read it
    InferenceFailed: 500,
    ServiceError: 500,
    # The store, reached through model resolution and the admin endpoints.
    InvalidNameError: 400,
    ModelNotFoundError: 404,
    VersionNotFoundError: 404,
    AliasNotFoundError: 404,
    VersionInUseError: 409,
    IntegrityError: 500,
    StoreError: 500,
    # The window index, reached through /index and /search.
    InvalidQuery: 400,
    NotIndexed: 404,
    WrongSpace: 409,
    WindowIndexError: 500,
}

STORE_CODES: dict[type[Exception], str] = {
    InvalidNameError: "bad_request",
    ModelNotFoundError: "model_not_found",
    VersionNotFoundError: "model_not_found",
    AliasNotFoundError: "model_not_found",
    VersionInUseError: "conflict",
    IntegrityError: "integrity_error",
    StoreError: "store_error",
    InvalidQuery: InvalidQuery.code,
    NotIndexed: NotIndexed.code,
    WrongSpace: WrongSpace.code,
    WindowIndexError: WindowIndexError.code,
}


#: The web framework's own refusals: malformed parameters, unknown paths and methods.
HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}


def status_for(error: BaseException) -> int:
    # NOTE: imported here, not at the top: decode workers import this module (to raise its
    # errors) and fastapi would add half a second to every worker's start.
    from fastapi.exceptions import RequestValidationError

    if isinstance(error, RequestValidationError):
        return 400
    if isinstance(error, HTTPException):
        return error.status_code
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def code_for(error: BaseException) -> str:
    if isinstance(error, ServiceError):
        return error.code
    for cls in type(error).__mro__:
        if cls in STORE_CODES:
            return STORE_CODES[cls]
    status = status_for(error)  # the framework's own refusals
    return HTTP_CODES.get(status, "http_error") if status < 500 else "internal_error"


def error_body(
    code: str, message: str, *, request_id: str | None = None, oip: bool = False, **extra: object
) -> dict[str, Any]:
    """The JSON body of every refusal: `{"error": code, "message": message, "request_id":
    ..., **extra}` (`extra`: the error's `details()`). Under the Open Inference Protocol
    (`oip`, the /v2 routes) the protocol's `{"error": message}`, with the same code, request
    id and details beside it."""
    if oip:
        return {"error": message, "code": code, "request_id": request_id, **extra}
    return {"error": code, "message": message, "request_id": request_id, **extra}


def openapi_errors(model: type, *errors: type[Exception]) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` table of a route that raises `errors`: each one's status from
    `STATUS`, described by the first paragraph of its docstring (those sharing a status
    joined), with `model` (the body's schema) for every row."""
    described: dict[int, list[str]] = {}
    for error in errors:
        status = next(STATUS[cls] for cls in error.__mro__ if cls in STATUS)
        text = " ".join((error.__doc__ or error.__name__).split("\n\n")[0].split())
        described.setdefault(status, []).append(text)
    return {
        status: {"model": model, "description": " ".join(dict.fromkeys(texts))}
        for status, texts in sorted(described.items())
    }


def all_codes() -> list[str]:
    """Every `error` code a response can carry."""
    codes, queue = set(HTTP_CODES.values()) | set(STORE_CODES.values()), [ServiceError]
    while queue:
        error = queue.pop()
        codes.add(error.code)
        queue.extend(error.__subclasses__())
    return sorted(codes | {"http_error", "internal_error"})
