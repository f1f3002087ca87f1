"""Receiving an upload: streamed to temporary files, counted, cut off at the limit; and
dropping a request's work when its client leaves (`unless_disconnected`).

Two forms are accepted: multipart/form-data with a file field named `video` (or, for routes
that take several videos, one file field per name they ask for), or a raw body whose content
type is video/* (or application/octet-stream) when a route takes one video. Nothing holds a
whole video in memory, and a body over the limit is refused as soon as its declared length or
its byte count says so, without reading the rest.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import BinaryIO, TypeVar

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from service.engine import VideoFile
from service.errors import (
    BadRequest,
    ClientDisconnected,
    RequestTimeout,
    UnsupportedMediaType,
    UploadTooLarge,
)
from service.settings import Settings

T = TypeVar("T")

VIDEO_FIELD = "video"
#: Room for multipart boundaries and part headers on top of the video's own bytes.
MULTIPART_OVERHEAD = 16 * 1024


class _FileParts:
    """python-multipart callbacks that write each wanted field's bytes to its own file."""

    def __init__(self, sinks: dict[str, BinaryIO], max_bytes: int) -> None:
        self.sinks = sinks
        self.max_bytes = max_bytes
        self.written = dict.fromkeys(sinks, 0)
        self.seen: set[str] = set()
        self._current: str | None = None
        self._header_field = b""
        self._header_value = b""
        self._disposition = b""

    @property
    def missing(self) -> list[str]:
        return [name for name in self.sinks if name not in self.seen]

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: self._field(data[start:end]),
            "on_header_value": lambda data, start, end: self._value(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._end,
        }

    def _begin(self) -> None:
        self._disposition = b""
        self._header_field = self._header_value = b""

    def _field(self, chunk: bytes) -> None:
        self._header_field += chunk

    def _value(self, chunk: bytes) -> None:
        self._header_value += chunk

    def _header_end(self) -> None:
        if self._header_field.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_field = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("latin-1")
        # The first part of each wanted name is kept; repeats and other fields are skipped.
        self._current = name if name in self.sinks and name not in self.seen else None
        if self._current is not None:
            self.seen.add(name)

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._current is not None:
            self.written[self._current] += end - start
            if self.written[self._current] > self.max_bytes:
                raise UploadTooLarge(
                    f"field '{self._current}' exceeds max_upload_bytes ({self.max_bytes:,} "
                    "bytes, ACTSERVE_MAX_UPLOAD_BYTES); stopped reading",
                    limit=self.max_bytes,
                )
            self.sinks[self._current].write(data[start:end])

    def _end(self) -> None:
        self._current = None


@asynccontextmanager
async def receive_uploads(
    request: Request,
    fields: tuple[str, ...],
    settings: Settings,
    *,
    deadline: float,
    on_received: Callable[[], None] = lambda: None,
) -> AsyncIterator[dict[str, VideoFile]]:
    """Stream the multipart file `fields` of the request into temporary files in
    `settings.upload_dir` (removed on exit), each at most `max_upload_bytes`; a route taking
    one field also takes it as a raw body.
    `on_received` is called once the whole body is in; each file's `upload_s` is the time to
    receive the whole body.

    A client that pauses longer than `body_idle_timeout_s`, or has not sent everything by
    `deadline` (the event loop's clock), gets `RequestTimeout`: a stalled upload, or one
    shorter than its declared Content-Length, does not hold a socket and a file for ever.
    """
    started = time.perf_counter()
    max_bytes, idle_timeout_s = settings.video.max_upload_bytes, settings.http.body_idle_timeout_s
    media_type, options = parse_options_header(request.headers.get("content-type", ""))
    media_type = media_type.decode("latin-1").lower()
    multipart = media_type == "multipart/form-data"
    raw_allowed = len(fields) == 1
    named = " and ".join(f"'{f}'" for f in fields)
    raw = media_type.startswith("video/") or media_type == "application/octet-stream"
    if not (multipart or (raw_allowed and raw)):
        also_raw = " or as a raw body with a video/* content type" if raw_allowed else ""
        raise UnsupportedMediaType(
            f"send the {'video' if raw_allowed else 'videos'} as multipart/form-data "
            f"{'field' if raw_allowed else 'fields'} {named}{also_raw}; "
            f"got {media_type or 'no content type'!r}"
        )
    allowance = max_bytes * len(fields) + (MULTIPART_OVERHEAD * len(fields) if multipart else 0)
    _refuse_declared_length(request, allowance, max_bytes)
    paths: dict[str, Path] = {}
    try:
        sinks: dict[str, BinaryIO] = {}
        for field in fields:
            handle, name = tempfile.mkstemp(
                prefix=f"actserve-upload-{field}-", dir=settings.upload_dir
            )
            paths[field] = Path(name)
            sinks[field] = os.fdopen(handle, "wb")
        try:
            parts = _FileParts(sinks, max_bytes)
            await _receive(
                request,
                parts,
                options if multipart else None,
                allowance=allowance,
                max_bytes=max_bytes,
                idle_timeout_s=idle_timeout_s,
                deadline=deadline,
            )
        finally:
            for sink in sinks.values():
                sink.close()
        on_received()
        if multipart and parts.missing:
            raise BadRequest(
                f"the multipart body has no {' or '.join(repr(f) for f in parts.missing)} "
                "file field"
            )
        received = {}
        for field, path in paths.items():
            size = path.stat().st_size
            if size == 0:
                raise BadRequest(
                    "the upload is empty" if raw_allowed else f"field '{field}' is empty"
                )
            received[field] = VideoFile(path, field, size, time.perf_counter() - started)
        yield received
    finally:
        for path in paths.values():
            path.unlink(missing_ok=True)


async def _receive(
    request: Request,
    parts: _FileParts,
    multipart_options: dict[bytes, bytes] | None,
    *,
    allowance: int,
    max_bytes: int,
    idle_timeout_s: float,
    deadline: float,
) -> None:
    """Read the body: through the multipart parser into `parts`, or raw into its one sink."""
    parser = None
    if multipart_options is not None:
        boundary = multipart_options.get(b"boundary")
        if not boundary:
            raise BadRequest("multipart/form-data without a boundary")
        try:  # python-multipart refuses boundaries over 256 bytes here
            parser = MultipartParser(boundary, parts.callbacks())
        except FormParserError as exc:
            raise BadRequest(f"malformed multipart boundary: {exc}") from None
    raw_sink = next(iter(parts.sinks.values()))  # a raw body has one field
    received = 0
    try:
        async for chunk in _chunks(request, idle_timeout_s, deadline):
            received += len(chunk)
            if received > allowance:
                raise _too_large(max_bytes)
            if parser is not None:
                parser.write(chunk)
            else:
                raw_sink.write(chunk)
        if parser is not None:
            parser.finalize()
    except FormParserError as exc:
        raise BadRequest(f"malformed multipart body: {exc}") from None
    except ClientDisconnect:
        raise ClientDisconnected("the client left during the upload") from None


async def read_body(request: Request, settings: Settings, *, deadline: float) -> bytes:
    """A whole (small) body in memory, refused like an upload once it passes
    `max_upload_bytes`: on its declared length, or as soon as the stream passes it; timed out
    like an upload."""
    max_bytes, idle_timeout_s = settings.video.max_upload_bytes, settings.http.body_idle_timeout_s
    _refuse_declared_length(request, max_bytes, max_bytes)
    chunks: list[bytes] = []
    received = 0
    try:
        async for chunk in _chunks(request, idle_timeout_s, deadline):
            received += len(chunk)
            if received > max_bytes:
                raise _too_large(max_bytes)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientDisconnected("the client left during the upload") from None
    return b"".join(chunks)


def _refuse_declared_length(request: Request, allowance: int, max_bytes: int) -> None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > allowance:
        raise UploadTooLarge(
            f"the upload declares {int(declared):,} bytes; max_upload_bytes is {max_bytes:,} "
            "(ACTSERVE_MAX_UPLOAD_BYTES)",
            limit=max_bytes,
        )


def _too_large(max_bytes: int) -> UploadTooLarge:
    return UploadTooLarge(
        f"the upload exceeds max_upload_bytes ({max_bytes:,} bytes, "
        "ACTSERVE_MAX_UPLOAD_BYTES); stopped reading",
        limit=max_bytes,
    )


async def _chunks(request: Request, idle_timeout_s: float, deadline: float) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive, each within `idle_timeout_s` and `deadline`."""
    loop = asyncio.get_running_loop()
    chunks = request.stream().__aiter__()
    while True:
        left = deadline - loop.time()
        try:
            async with asyncio.timeout(max(0.0, min(idle_timeout_s, left))):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            if left <= idle_timeout_s:
                raise RequestTimeout(
                    "the upload did not arrive before the request's deadline "
                    "(ACTSERVE_REQUEST_TIMEOUT_S); stopped reading"
                ) from None
            raise RequestTimeout(
                f"the upload stalled: nothing arrived for {idle_timeout_s:g} s "
                "(ACTSERVE_BODY_IDLE_TIMEOUT_S); stopped reading"
            ) from None
        yield chunk


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Run `work`, but cancel it (dropping queued decode and inference) if the client
    leaves: once the body is read, the next ASGI message is the disconnect."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise ClientDisconnected("the client closed the connection; its work was dropped")
    finally:
        watcher.cancel()
        task.cancel()


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
