"""Open an untrusted video safely and read what it claims to be, before decoding it.

`open_video` is the only place that hands a file to FFmpeg: as bytes (its name plays no
part), under an allow-list of demuxers (`format_whitelist`), with no decoder run while the
header is probed (`codec_whitelist`), and with FFmpeg's errors translated into the typed
errors of `service.errors`.
`probe_video` then checks the header against `VideoLimits` and only then decodes the first
frame, because FFmpeg 8 keeps the display matrix (rotation) in codec side data that PyAV 18
only exposes on decoded frames; that frame also gives the pixel format and proves the stream
decodes at all.
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from fractions import Fraction
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
    NoDecodableFrames,
    NotAVideo,
    UnsupportedCodec,
)
from service.video.limits import VideoLimits

__all__ = [
    "VideoInfo",
    "decode_packet",
    "open_video",
    "prepare_decoder",
    "probe_video",
    "read_first_frame",
    "read_header",
    "with_first_frame",
]


@dataclass(frozen=True)
class VideoInfo:
    """What a video is, from its header (`probe_video`) or its packets (`scan_frames`).

    `width` × `height` is the coded size; `rotation` (0, 90, 180, 270, counter-clockwise) turns
    it into the displayed size. `frames_estimated` is True when the container does not count
    its frames (MKV/WebM) and the count is duration × fps. `variable_frame_rate` is a header
    guess (average vs nominal rate) until a packet scan measures it.
    """

    container: str
    codec: str
    width: int
    height: int
    pix_fmt: str | None
    fps: float
    variable_frame_rate: bool
    duration_s: float
    start_s: float
    num_frames: int
    frames_estimated: bool
    rotation: int
    has_audio: bool
    size_bytes: int

    @property
    def display_size(self) -> tuple[int, int]:
        """(height, width) as shown to a viewer, after rotation."""
        if self.rotation in (90, 270):
            return self.width, self.height
        return self.height, self.width


def probe_video(path: str | os.PathLike[str], limits: VideoLimits | None = None) -> VideoInfo:
    """Read the header, enforce `limits` from it, then decode the first frame for its rotation.

    Raises the `VideoError` that says what is wrong: `NotAVideo`, `AudioOnly`,
    `ContainerNotAllowed`, `UnsupportedCodec`, `CorruptVideo`, `NoDecodableFrames` or
    `LimitExceeded`.
    """
    limits = limits or VideoLimits()
    with open_video(path, limits) as (container, stream):
        info = read_header(container, stream, Path(path).stat().st_size, limits)
        return with_first_frame(info, read_first_frame(container, stream, limits))


def with_first_frame(info: VideoInfo, frame: av.VideoFrame) -> VideoInfo:
    """Fill in what only a decoded frame tells: display rotation and pixel format."""
    return replace(info, rotation=normalise_rotation(frame.rotation), pix_fmt=frame.format.name)


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
    if size > limits.max_bytes:
        raise LimitExceeded("bytes", size, limits.max_bytes, "bytes")
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
                container = av.open(_Unnamed(file), mode="r", options=options)
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


def read_header(
    container: InputContainer, stream: VideoStream, size: int, limits: VideoLimits
) -> VideoInfo:
    """Fill a `VideoInfo` from the container header and enforce the header limits."""
    codec = stream.codec_context
    width, height = codec.width, codec.height
    if width <= 0 or height <= 0:
        raise CorruptVideo(f"the video stream declares no frame size ({width}x{height})")
    if width * height > limits.max_pixels:
        raise LimitExceeded("pixels", width * height, limits.max_pixels, "px")
    aspect = max(width, height) / min(width, height)
    if aspect > limits.max_aspect_ratio:
        raise LimitExceeded("aspect_ratio", round(aspect, 2), limits.max_aspect_ratio)

    time_base = stream.time_base or Fraction(1, 1)
    average = _rate(stream.average_rate)
    nominal = _rate(stream.guessed_rate) or _rate(stream.base_rate)
    if stream.duration:
        duration = float(stream.duration * time_base)
    elif container.duration:
        duration = container.duration / av.time_base
    else:
        duration = 0.0
    fps = average or nominal or 0.0
    frames_estimated = not stream.frames
    num_frames = stream.frames or max(1, round(duration * fps))
    if not duration and fps:
        duration = num_frames / fps
    if duration > limits.max_duration_s:
        raise LimitExceeded("duration", round(duration, 3), limits.max_duration_s, "s")
    if num_frames > limits.max_frames:
        raise LimitExceeded("frames", num_frames, limits.max_frames, "frames")
    return VideoInfo(
        container=container.format.name,
        codec=codec.codec.canonical_name,
        width=width,
        height=height,
        pix_fmt=codec.pix_fmt,
        fps=fps,
        variable_frame_rate=bool(average and nominal and abs(average - nominal) > 0.01 * nominal),
        duration_s=duration,
        start_s=float(stream.start_time * time_base) if stream.start_time else 0.0,
        num_frames=num_frames,
        frames_estimated=frames_estimated,
        rotation=0,
        has_audio=any(s.type == "audio" for s in container.streams),
        size_bytes=size,
    )


def read_first_frame(
    container: InputContainer, stream: VideoStream, limits: VideoLimits
) -> av.VideoFrame:
    """Decode up to the first frame; up to `max_corrupt_packets` broken packets are skipped."""
    prepare_decoder(stream, limits, threads=1)
    broken = 0
    packets = container.demux(stream)
    try:
        for packet in packets:
            frames = decode_packet(stream, packet)
            if frames is None:
                broken += 1
                if broken > limits.max_corrupt_packets:
                    raise CorruptVideo(f"{broken} packets failed to decode before any frame")
            elif frames:
                return frames[0]
    finally:
        packets.close()
    raise NoDecodableFrames("the file holds a video stream but no frame decodes")


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
    codec = stream.codec_context.codec.canonical_name
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


def _rate(rate: Fraction | None) -> float:
    return float(rate) if rate else 0.0


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
