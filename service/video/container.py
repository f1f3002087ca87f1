"""Container plumbing: the only place an untrusted file is handed to FFmpeg.

`open_video` opens a file as bytes (its name plays no part in format detection), under an
allow-list of demuxers (`format_whitelist`), with no decoder run while the header is probed
(`codec_whitelist`), and translates FFmpeg's errors into the typed errors of `service.errors`.
`prepare_decoder` caps the decoder's frame size and sets its threads; `decode_packet` decodes
one packet, telling a broken packet (None) from running out of memory (MemoryError).
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import av
import av.logging
from av.container import InputContainer
from av.video.stream import VideoStream

from service.errors import (
    AudioOnly,
    ContainerNotAllowed,
    CorruptVideo,
    LimitExceeded,
    NotAVideo,
    UnsupportedCodec,
)
from service.video.limits import VideoLimits

__all__ = ["decode_packet", "normalise_rotation", "open_video", "prepare_decoder"]


@contextmanager
def open_video(
    path: str | os.PathLike[str], limits: VideoLimits
) -> Iterator[tuple[InputContainer, VideoStream]]:
    """Open `path` under the allow-lists and yield its first video stream.

    The file size is checked before FFmpeg sees a byte of it; the stream count, the presence
    of a video stream and its codec right after the container header is read.
    """
    size = Path(path).stat().st_size
    if size == 0:
        raise NotAVideo("the file is empty")
    if size > limits.max_upload_bytes:
        raise LimitExceeded("bytes", size, limits.max_upload_bytes, "bytes")
    options = {
        "format_whitelist": ",".join(limits.containers),
        # NOTE: a list naming no decoder: FFmpeg decodes nothing while probing the header, so
        # the first decoder to run is ours, after the codec and size checks. (With
        # `max_pixels` instead, an oversized MJPEG reports 0x0 rather than its size.)
        "codec_whitelist": "none",
        "protocol_whitelist": "file",
    }
    with open(path, "rb") as file:
        try:
            with _ffmpeg_errors() as logs:
                # Metadata (titles, tags) is text FFmpeg passes on as it found it: replace
                # what is not UTF-8 rather than fail on it.
                container = av.open(
                    _Unnamed(file), mode="r", options=options, metadata_errors="replace"
                )
        except av.FFmpegError as error:
            raise _open_error(error, logs, limits) from None
        try:
            yield container, _video_stream(container, limits)
        finally:
            container.close()


class _Unnamed:
    """A file without a name, so FFmpeg detects the format from its bytes alone.

    Given a name (a path, or a file object's `.name`), FFmpeg also scores its extension:
    random bytes named `.dat` open as "luodat", named `.mp4` as a damaged MP4.
    """

    def __init__(self, file: BinaryIO) -> None:
        self._file = file

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()


def decode_packet(stream: VideoStream, packet: av.Packet) -> list[av.VideoFrame] | None:
    """Decode one packet (an empty one flushes); None when the decoder rejects it as broken.

    Running out of memory raises MemoryError, which the pool reports as `DecodeOutOfMemory`;
    so does EAGAIN, FFmpeg's word for decoder threads it could not start.
    """
    try:
        return stream.codec_context.decode(packet if packet.size else None)
    except MemoryError:
        raise
    except av.FFmpegError as error:
        if error.errno == errno.EAGAIN:
            raise MemoryError(f"the decoder could not start: {error.strerror}") from None
        return None


def prepare_decoder(stream: VideoStream, limits: VideoLimits, threads: int | None = None) -> None:
    """Cap the decoder's frame size (a bitstream may disagree with its container) and threads.

    `threads` None keeps FFmpeg's default; otherwise frame + slice threading with that many
    threads (0: FFmpeg picks).
    """
    codec = stream.codec_context
    codec.options = {"max_pixels": str(limits.max_pixels)}
    if threads is not None:
        codec.thread_type = "AUTO"
        codec.thread_count = threads


def normalise_rotation(degrees: float) -> int:
    """Snap a display-matrix angle to 0, 90, 180 or 270 (counter-clockwise)."""
    if not math.isfinite(degrees):
        return 0
    return (round(degrees / 90) % 4) * 90


def _video_stream(container: InputContainer, limits: VideoLimits) -> VideoStream:
    streams = container.streams
    if len(streams) > limits.max_streams:
        raise LimitExceeded("streams", len(streams), limits.max_streams, "streams")
    if not streams.video:
        if streams.audio:
            raise AudioOnly("the file has audio but no video stream")
        raise NotAVideo(f"the {container.format.name} file has no video stream")
    stream = streams.video[0]
    context = stream.codec_context
    if context is None or context.codec is None:  # PyAV's view of a codec FFmpeg does not know
        raise UnsupportedCodec("unknown", limits.codecs)
    codec = context.codec.canonical_name
    if codec not in limits.codecs:
        raise UnsupportedCodec(codec, limits.codecs)
    return stream


def _open_error(
    error: av.FFmpegError, logs: list[tuple[int, str, str]], limits: VideoLimits
) -> Exception:
    """Translate an `av.open` failure from the FFmpeg error lines logged while it ran."""
    lines = [(name, text.strip()) for _, name, text in logs if not text.startswith("Codec (")]
    for name, text in lines:
        if text.startswith("Format not on whitelist"):
            if name.endswith("_pipe") or name == "image2":
                return NotAVideo(
                    f"this is a still image ({name.removesuffix('_pipe')}), not a video"
                )
            return ContainerNotAllowed(name, limits.containers)
    if isinstance(error, av.error.InvalidDataError) and lines:
        name, text = lines[-1]
        return CorruptVideo(f"truncated or damaged {name.split(',')[0]} file: {text}")
    return NotAVideo(f"no video container FFmpeg can read ({error.strerror or error})")


@contextmanager
def _ffmpeg_errors() -> Iterator[list[tuple[int, str, str]]]:
    """Capture FFmpeg's error lines: (level, component, message).

    Without them "moov atom not found" and "Format not on whitelist" stay hidden and a
    truncated MP4 looks like random bytes. (PyAV's `error.log` can be a stale line from an
    earlier call, so the lines are captured here.)
    """
    # NOTE: only around `av.open`. PyAV's log callback takes the GIL; a decoder frame thread
    # logging a broken packet while the main thread waits for it (holding the GIL) deadlocks.
    # PyAV holds back a line identical to the previous one (and emits it later, into whatever
    # captures then): the same refusal twice in a row would go unseen.
    level, skip = av.logging.get_level(), av.logging.get_skip_repeated()
    av.logging.set_level(av.logging.ERROR)
    av.logging.set_skip_repeated(False)
    try:
        with av.logging.Capture() as logs:
            yield logs
    finally:
        av.logging.set_level(level)
        av.logging.set_skip_repeated(skip)
