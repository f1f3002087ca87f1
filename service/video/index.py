"""What a video is and where its frames are, read in one pass over the file.

`index_video` opens the file once: the header is checked against `VideoLimits` before anything
is decoded, then every packet is demuxed without decoding (about 30 ms for 60 s of 1080p) for
the real frame count, timestamps and keyframes (a truncated file still declares its full
length, MKV without cues has no keyframe index), and the first frame alone is decoded on the
way, because FFmpeg 8 keeps the display matrix (rotation) in codec side data that PyAV 18 only
exposes on decoded frames; that frame also gives the pixel format and proves the stream decodes
at all.

`index_container` is the decode job's faster variant, on a container it keeps open for
reading: no frame is decoded (the reader's first frame gives rotation and pixel format), and
MP4 and AVI files are indexed from the container's own index (MP4's sample tables `stts`
and `stss`, AVI's `idx1`) instead of demuxing every packet, when that index can be trusted (see
`_container_index`); otherwise it scans the packets.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.container import InputContainer
from av.video.stream import VideoStream

from service.errors import CorruptVideo, LimitExceeded, NoDecodableFrames
from service.video.container import (
    decode_packet,
    normalise_rotation,
    open_video,
    prepare_decoder,
)
from service.video.limits import VideoLimits

__all__ = [
    "FrameIndex",
    "IndexedVideo",
    "VideoInfo",
    "index_container",
    "index_video",
    "probe_video",
    "read_header",
    "with_first_frame",
]

#: Demuxers whose index lists every frame (MP4/MOV sample tables, AVI idx1).
_FULLY_INDEXED = ("mov", "avi")
#: Packets read to find the first presentation timestamp: more than any decoder's reordering.
_REORDER_PACKETS = 16


@dataclass(frozen=True)
class VideoInfo:
    """What a video is, from its header (`probe_video`) or its packets (`index_video`).

    `width` × `height` is the coded size; `rotation` (0, 90, 180, 270, counter-clockwise) turns
    it into the displayed size. `frames_estimated` is True when the container does not count
    its frames (MKV/WebM) and the count is duration × fps. `variable_frame_rate` is a header
    guess (average vs nominal rate) until the packets measure it.
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


@dataclass(frozen=True)
class FrameIndex:
    """Every frame's presentation timestamp (sorted) and the keyframes, from the packets.

    Keyframes keep their decode timestamp too: MP4 and AVI index (and seek) by it, Matroska
    by the presentation timestamp. `by_pts` is False when the packets carry no usable
    timestamps; frames are then identified by their order out of the decoder and the timeline
    is evenly spaced. `from_container` marks an index read from the container's own index
    rather than the packets: a decoded frame whose timestamp it does not list proves it wrong
    (the reader then raises `IndexMismatch` and the job scans the packets instead).
    """

    pts: np.ndarray
    keyframes: np.ndarray
    keyframe_dts: np.ndarray
    time_base: Fraction
    by_pts: bool = True
    from_container: bool = False

    @property
    def num_frames(self) -> int:
        return len(self.pts)

    @property
    def times_s(self) -> np.ndarray:
        """Seconds from the first frame, one per frame in presentation order."""
        return (self.pts - self.pts[0]).astype(np.float64) * float(self.time_base)

    def keyframe_times_s(self) -> np.ndarray:
        """Seconds from the first frame of each keyframe (none known without timestamps)."""
        if not self.by_pts:
            return np.zeros(0)
        positions = np.minimum(np.searchsorted(self.pts, self.keyframes), self.num_frames - 1)
        return self.times_s[positions]

    def position_of(self, times_s: np.ndarray) -> np.ndarray:
        """The frame on screen at each moment: the last frame that starts at or before it."""
        positions = np.searchsorted(self.times_s, times_s, side="right") - 1
        return np.clip(positions, 0, self.num_frames - 1)


@dataclass(frozen=True)
class IndexedVideo:
    """`index_video`'s answer: the video as the packets describe it, and what the header said."""

    info: VideoInfo
    header: VideoInfo
    index: FrameIndex

    @property
    def warnings(self) -> tuple[str, ...]:
        """Damage visible before decoding: data that ends well before the declared duration."""
        declared, found = self.header.duration_s, self.info
        if declared > 0 and found.duration_s < declared - max(0.5, 2.0 / max(found.fps, 1.0)):
            return (
                f"truncated: the data ends at {found.duration_s:.2f} s of the {declared:.2f} s "
                "the header declares",
            )
        return ()

    def with_size_of(self, probed: VideoInfo) -> IndexedVideo:
        """The same video with the frame size a probe decoded, for a header that had none."""
        size = {"width": probed.width, "height": probed.height}
        return replace(self, info=replace(self.info, **size), header=replace(self.header, **size))


def probe_video(path: str | os.PathLike[str], limits: VideoLimits) -> VideoInfo:
    """The header, checked against `limits`, with the first frame's rotation and pixel format.

    Raises the `VideoError` that says what is wrong: `NotAVideo`, `AudioOnly`,
    `ContainerNotAllowed`, `UnsupportedCodec`, `CorruptVideo`, `NoDecodableFrames` or
    `LimitExceeded`.
    """
    with open_video(path, limits) as (container, stream):
        info = read_header(container, stream, Path(path).stat().st_size, limits)
        prepare_decoder(stream, limits, threads=1)
        first = _FirstFrame(stream, limits)
        packets = container.demux(stream)
        try:
            for packet in packets:
                if first.feed(packet):
                    break
        finally:
            packets.close()
        return with_first_frame(info, first.result(), limits)


def index_video(path: str | os.PathLike[str], limits: VideoLimits) -> IndexedVideo:
    """Header, packet index and first frame in one open of the file; every limit checked."""
    with open_video(path, limits) as (container, stream):
        header = read_header(container, stream, Path(path).stat().st_size, limits)
        prepare_decoder(stream, limits, threads=1)
        first = _FirstFrame(stream, limits)
        index = _scan(container, stream, limits, first)
        header = with_first_frame(header, first.result(), limits)
    return IndexedVideo(info=_refine(header, index, limits), header=header, index=index)


def index_container(
    container: InputContainer,
    stream: VideoStream,
    size: int,
    limits: VideoLimits,
    *,
    trust_index: bool = True,
) -> IndexedVideo:
    """Header and frame index of an open container, decoding nothing; every limit checked.

    The answer's rotation is 0 and its pixel format the header's until a frame is decoded
    (`with_first_frame`). The container is left somewhere in the file: seek before reading.
    `trust_index=False` scans the packets even where the container has an index.
    """
    header = read_header(container, stream, size, limits)
    head: list[av.Packet] = []  # packets the container index check read: the scan's start
    index = _container_index(container, stream, size, head) if trust_index else None
    if index is None:
        index = _scan(container, stream, limits, None, head)
    return IndexedVideo(info=_refine(header, index, limits), header=header, index=index)


def read_header(
    container: InputContainer, stream: VideoStream, size: int, limits: VideoLimits
) -> VideoInfo:
    """Fill a `VideoInfo` from the container header and enforce the header limits.

    A header may hold no frame size (0x0): FFmpeg leaves MPEG-4 Part 2 in MP4 so until a
    decoder reads the stream's own header, which the probe never runs. The first decoded
    frame then gives the size and meets the same limits (`with_first_frame`; the decode job
    probes for it before planning, `IndexedVideo.with_size_of`); its decoder is capped at
    `max_pixels` meanwhile (`prepare_decoder`).
    """
    codec = stream.codec_context
    width, height = codec.width, codec.height
    if width > 0 and height > 0:
        _check_size(width, height, limits)
    else:
        width = height = 0

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


class _FirstFrame:
    """Decodes packets (one thread) until the first frame comes out; up to
    `max_corrupt_packets` broken packets are skipped on the way."""

    def __init__(self, stream: VideoStream, limits: VideoLimits) -> None:
        self.stream = stream
        self.limits = limits
        self.frame: av.VideoFrame | None = None
        self.broken = 0

    def feed(self, packet: av.Packet) -> bool:
        """Decode `packet` unless a frame is already in hand (an empty packet flushes);
        True once it is."""
        if self.frame is not None:
            return True
        frames = decode_packet(self.stream, packet)
        if frames is None:
            self.broken += 1
            if self.broken > self.limits.max_corrupt_packets:
                raise CorruptVideo(f"{self.broken} packets failed to decode before any frame")
        elif frames:
            self.frame = frames[0]
        return self.frame is not None

    def result(self) -> av.VideoFrame:
        if self.frame is None:
            self.feed(av.Packet())  # drain what the decoder still holds
        if self.frame is None:
            raise NoDecodableFrames("the file holds a video stream but no frame decodes")
        return self.frame


def with_first_frame(info: VideoInfo, frame: av.VideoFrame, limits: VideoLimits) -> VideoInfo:
    """Fill in what only a decoded frame tells: display rotation and pixel format, and the
    frame size when the header had none."""
    if not info.width:
        _check_size(frame.width, frame.height, limits)
        info = replace(info, width=frame.width, height=frame.height)
    return replace(info, rotation=normalise_rotation(frame.rotation), pix_fmt=frame.format.name)


def _check_size(width: int, height: int, limits: VideoLimits) -> None:
    if width * height > limits.max_pixels:
        raise LimitExceeded("pixels", width * height, limits.max_pixels, "px")
    aspect = max(width, height) / max(1, min(width, height))
    if aspect > limits.max_aspect_ratio:
        raise LimitExceeded("aspect_ratio", round(aspect, 2), limits.max_aspect_ratio)


def _container_index(
    container: InputContainer, stream: VideoStream, size: int, head: list[av.Packet]
) -> FrameIndex | None:
    """The frame index from the container's own index, or None where it cannot be trusted.

    MP4/MOV and AVI list every frame (decode timestamp, keyframe flag, byte range) in their
    header, so the packets need not be read (48-85 ms for 60 s of 1080p, and all of a 260 MB
    MJPEG file). Trusted only when the listing is complete and whole: as many entries as the
    header's frame count, none discarded (edit lists) or reaching past the end of the file
    (truncated), starting with a keyframe, and evenly spaced decode timestamps. A constant-rate
    stream's presentation times are then its decode times shifted by the reordering delay
    (read off the first packets' timestamps); a variable-rate one with B-frames would need
    each frame's composition offset, which the index does not carry, so it is scanned, and so
    is an AVI whose frames are reordered. The reader checks every frame it decodes against
    the index and raises `IndexMismatch` when one is not there.
    """
    if container.format.name.split(",")[0] not in _FULLY_INDEXED:
        return None
    entries = stream.index_entries
    count = len(entries)
    if count < 2 or count != stream.frames:
        return None
    dts = np.empty(count, dtype=np.int64)
    key = np.zeros(count, dtype=bool)
    for i, entry in enumerate(entries):
        if entry.is_discard or entry.size <= 0 or entry.pos + entry.size > size:
            return None
        dts[i] = entry.timestamp
        key[i] = entry.is_keyframe
    steps = np.diff(dts)
    if not key[0] or steps.min() <= 0 or steps.max() != steps.min():
        return None
    first = _first_presentation(container, stream, head)
    if first is None:
        return None
    start, reordered = first
    if reordered and container.format.name != "mov,mp4,m4a,3gp,3g2,mj2":
        # NOTE: AVI keyframes may be shown after B-frames that follow them (MPEG-4 part 2):
        # their presentation times are not their decode times shifted. MP4 sync samples
        # are closed-GOP keyframes in practice; where one is not, the reader's landing
        # checks catch it.
        return None
    shift = start - int(dts[0])
    return FrameIndex(
        pts=dts + shift,
        keyframes=dts[key] + shift,
        keyframe_dts=dts[key],
        time_base=stream.time_base or Fraction(1, 1),
        from_container=True,
    )


def _first_presentation(
    container: InputContainer, stream: VideoStream, head: list[av.Packet]
) -> tuple[int, bool] | None:
    """The earliest presentation timestamp among the first packets, and whether they come
    in another order than they are shown (None: a packet without timestamps). The packets
    read are appended to `head`."""
    packets = container.demux(stream)
    try:
        for packet in packets:
            head.append(packet)
            if sum(1 for p in head if p.size) >= _REORDER_PACKETS:
                break
    finally:
        packets.close()
    stamps = [p.pts for p in head if p.size]
    if not stamps or None in stamps:
        return None
    return min(stamps), stamps != sorted(stamps)


def _scan(
    container: InputContainer,
    stream: VideoStream,
    limits: VideoLimits,
    first: _FirstFrame | None,
    head: list[av.Packet] | None = None,
) -> FrameIndex:
    """Demux the whole video stream: timestamps and keyframes of every packet, decoding only
    up to its first frame when `first` asks for it. `head` holds packets already read.

    The packets, not the header, say how long a file really is: a truncated MP4 or MKV
    still declares its full duration.
    """
    stamps: list[int | None] = []
    keyframes: list[tuple[int | None, int | None]] = []
    for packet in itertools.chain(head or (), container.demux(stream)):
        if not packet.size or packet.is_discard:
            continue
        if first is not None:
            first.feed(packet)
        stamp = packet.pts if packet.pts is not None else packet.dts
        stamps.append(stamp)
        if packet.is_keyframe:
            keyframes.append((stamp, packet.dts))
        if len(stamps) > limits.max_frames:
            raise LimitExceeded("frames", len(stamps), limits.max_frames, "frames")
    if not stamps:
        raise NoDecodableFrames("the video stream holds no packets")
    time_base = stream.time_base or Fraction(1, 1)
    if any(s is None for s in stamps):
        rate = stream.average_rate or stream.guessed_rate or Fraction(30)
        start = np.zeros(1, dtype=np.int64)
        return FrameIndex(
            pts=np.arange(len(stamps), dtype=np.int64),
            keyframes=start,
            keyframe_dts=start,
            time_base=1 / Fraction(rate),
            by_pts=False,
        )
    # A keyframe's pts is never None here; its dts may be (sorting on it would compare None).
    keyframes = sorted(keyframes or [(stamps[0], None)], key=lambda k: k[0])
    return FrameIndex(
        pts=np.sort(np.array(stamps, dtype=np.int64)),
        keyframes=np.array([pts for pts, _ in keyframes], dtype=np.int64),
        keyframe_dts=np.array([pts if dts is None else dts for pts, dts in keyframes], np.int64),
        time_base=time_base,
    )


def _refine(info: VideoInfo, index: FrameIndex, limits: VideoLimits) -> VideoInfo:
    """Replace the header's counts with what the packets say, and check them again."""
    count = index.num_frames
    ticks = np.diff(index.pts)
    tick_s = float(index.time_base)
    if count > 1:
        step = float(np.median(ticks))
        duration = (float(index.pts[-1] - index.pts[0]) + step) * tick_s
        spread = float(ticks.max() - ticks.min())
        variable = count > 2 and spread > max(2.0, 0.05 * step)
    else:
        duration = info.duration_s if info.duration_s > 0 else 1.0 / (info.fps or 30.0)
        variable = False
    if duration > limits.max_duration_s:
        raise LimitExceeded("duration", round(duration, 3), limits.max_duration_s, "s")
    return replace(
        info,
        num_frames=count,
        frames_estimated=False,
        duration_s=duration,
        fps=count / duration if duration > 0 else info.fps,
        variable_frame_rate=variable,
    )


def _rate(rate: Fraction | None) -> float:
    return float(rate) if rate else 0.0
