"""Errors the service raises on purpose, one tree for the whole request path.

RequestError                      a request the service refuses or cannot complete
└── VideoError                    the upload cannot become model input
    ├── NotAVideo                 FFmpeg finds no video container in it (random bytes, an image)
    │   └── AudioOnly             a media file with sound but no video stream
    ├── ContainerNotAllowed       a real container format outside the allow-list
    ├── UnsupportedCodec          a video codec outside the allow-list or without a decoder
    ├── CorruptVideo              truncated or damaged data (unreadable index, broken packets)
    │   └── NoDecodableFrames     not a single frame decodes
    ├── LimitExceeded             over a limit: `limit` names it, with `value` and `maximum`
    └── DecodeFailed              the decode worker failed the job (see its subclasses)
        ├── DecodeTimeout         the job ran past the pool's time limit and was killed
        ├── DecodeOutOfMemory     the job hit the worker's memory limit
        └── WorkerCrashed         the worker process died (signal or abnormal exit)

Decoding runs in worker processes, so every error here must survive pickling: the base class
pickles an error as its class, message and attributes, whatever its constructor takes. HTTP
status codes are mapped in one table by the HTTP layer, never here.
"""

from __future__ import annotations

from typing import Any


def _rebuild(cls: type[RequestError], message: str, state: dict[str, Any]) -> RequestError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.6g}"


class RequestError(Exception):
    """Base class of every error the service raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), str(self), dict(self.__dict__)))


class VideoError(RequestError):
    """The uploaded file cannot become the model's input."""


class NotAVideo(VideoError):
    """No video container FFmpeg can read: random bytes, text, a still image."""


class AudioOnly(NotAVideo):
    """A media file with audio streams and no video stream."""


class ContainerNotAllowed(VideoError):
    """The container format is real but outside the allow-list."""

    def __init__(self, container: str, allowed: tuple[str, ...]) -> None:
        super().__init__(
            f"container format {container!r} is not allowed (allowed: {', '.join(allowed)})"
        )
        self.container = container
        self.allowed = allowed


class UnsupportedCodec(VideoError):
    """The video codec is outside the allow-list, or this build has no decoder for it."""

    def __init__(self, codec: str, allowed: tuple[str, ...]) -> None:
        super().__init__(f"video codec {codec!r} is not supported (allowed: {', '.join(allowed)})")
        self.codec = codec
        self.allowed = allowed


class CorruptVideo(VideoError):
    """Truncated or damaged data: the index is unreadable or too many packets are broken."""


class NoDecodableFrames(CorruptVideo):
    """The container opens but not one frame decodes."""


class LimitExceeded(VideoError):
    """A value read from the file (or planned from it) is over a configured limit."""

    def __init__(self, limit: str, value: float, maximum: float, unit: str = "") -> None:
        suffix = f" {unit}" if unit else ""
        super().__init__(
            f"{limit} over the limit: {_number(value)}{suffix} > {_number(maximum)}{suffix}"
        )
        self.limit = limit
        self.value = value
        self.maximum = maximum
        self.unit = unit


class DecodeFailed(VideoError):
    """The decode worker failed the job; the pool has replaced it."""


class DecodeTimeout(DecodeFailed):
    """The decode ran past the pool's per-job time limit and its worker was killed."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"decoding took longer than {seconds:g} s and was stopped")
        self.seconds = seconds


class DecodeOutOfMemory(DecodeFailed):
    """The decode needed more memory than a worker may use."""

    def __init__(self, limit_bytes: int | None) -> None:
        limit = f" of {limit_bytes / 2**20:.0f} MiB" if limit_bytes else ""
        super().__init__(f"decoding ran out of memory (worker limit{limit})")
        self.limit_bytes = limit_bytes


class WorkerCrashed(DecodeFailed):
    """The worker process died while decoding (a signal or an abnormal exit code)."""

    def __init__(self, exitcode: int | None) -> None:
        super().__init__(f"the decode worker died (exit code {exitcode})")
        self.exitcode = exitcode
