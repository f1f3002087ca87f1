"""Reading the frames at chosen positions of a `FrameIndex`: a keyframe-aware ("smart") seek.

Targets are read in order with one decoder, seeking only when a keyframe lies beyond the next
frame and at or before the target: never more frames than a sequential pass, far fewer on
short GOPs. On the way to a target, H.264 and HEVC frames no other frame refers to are not
decoded at all (`skip_frame` NONREF for packets presented before the target): about half the
frames of a typical B-frame GOP. A broken packet costs a few frames, not the request (up to
`max_corrupt_packets`), and the reader says so in `warnings()`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import av
import numpy as np
from av.container import InputContainer
from av.video.stream import VideoStream

from service.errors import CorruptVideo, DecodeTimeout, LimitExceeded, NoDecodableFrames
from service.video.container import decode_packet, open_video, prepare_decoder
from service.video.index import FrameIndex, IndexedVideo
from service.video.limits import VideoLimits

__all__ = ["DecodeBudget", "FrameObserver", "FrameReader", "IndexMismatch"]

#: Codecs whose non-reference frames are skipped on the way to a target. Skipping a frame
#: nothing refers to cannot change another frame; these decoders implement it per slice.
_SKIP_NONREF_CODECS = ("h264", "hevc")

Convert = Callable[[av.VideoFrame], np.ndarray]


class FrameObserver(Protocol):
    """Sees every frame a reader decodes, in presentation order (`ShotTracker`)."""

    def reset(self) -> None:
        """A pass starts (again, after a restart): forget the last one's frames."""

    def jump(self) -> None:
        """The reader seeks: the next frame does not follow the last one."""

    def frame(self, frame: av.VideoFrame) -> None: ...


#: The slowest decode a budget allows for, in pixels per second, and the least time it gives:
#: about a tenth of one core's H.264 1080p speed, so only a decode far slower than its size
#: explains (a decoder bomb the index underestimates, a pathological bitstream) is stopped.
SLOWEST_PIXELS_PER_S = 20e6
LEAST_SECONDS = 2.0


@dataclass(frozen=True)
class DecodeBudget:
    """What reading a plan will cost, from the index before anything is decoded: the frames
    the decoder must decode (each target from the keyframe the reader would seek to, or on from
    the last frame read) times the pixels of a frame, and the time that may take."""

    frames: int
    pixels: int

    @classmethod
    def of(
        cls, indexed: IndexedVideo, wanted: list[int], limits: VideoLimits, seek_past: int = 0
    ) -> DecodeBudget:
        """The budget of reading `wanted` (sorted positions) as a `FrameReader` with this
        `seek_past` does; `LimitExceeded("decode_pixels")` when it is over
        `limits.max_decode_pixels`."""
        index = indexed.index
        keyframes = _keyframe_positions(index) if index.by_pts else np.zeros(1, np.int64)
        frames, current = 0, -1
        for target in wanted:
            if target <= current:
                continue
            at = int(keyframes[max(int(np.searchsorted(keyframes, target, "right")) - 1, 0)])
            start = at if at > current + 1 + seek_past and at > 0 else current + 1
            frames += target - start + 1
            current = target
        info = indexed.info
        budget = cls(frames=frames, pixels=frames * info.width * info.height)
        if budget.pixels > limits.max_decode_pixels:
            raise LimitExceeded(
                "decode_pixels",
                budget.pixels,
                limits.max_decode_pixels,
                "px",
                detail=f" ({frames:,} frames to decode of {info.width}x{info.height})",
            )
        return budget

    @property
    def seconds(self) -> float:
        """How long decoding may take before the worker stops it as too slow for its size."""
        return LEAST_SECONDS + self.pixels / SLOWEST_PIXELS_PER_S


class IndexMismatch(Exception):
    """A decoded frame's timestamp is not in an index read from the container: the index is
    wrong for this file, and the packets must be scanned instead."""


class _Restart(Exception):
    """This pass cannot trust seeks (or timestamps); read again from the start without them."""

    def __init__(self, reason: str, *, keep_pts: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.keep_pts = keep_pts


class FrameReader:
    """Reads the frames at sorted positions of a `FrameIndex`, seeking only when it pays.

    Frames are identified by their timestamp's position in the index. A seek goes to the
    keyframe at or before the target by its presentation timestamp, then by its decode
    timestamp if that lands past the target (MP4 and AVI index by decode time). If timestamps
    prove unusable (out of order out of the decoder, as with H.264 with B-frames in AVI) or a
    seek still lands past its target, the read restarts once from the start, sequentially,
    identifying frames by their order.

    `opened` is the (container, stream) the index was read from: the first pass reads from it
    (seeking to its first target's keyframe first) instead of opening the file again.
    `observer` sees each decoded frame and each seek; `seek_past` frames are decoded through
    rather than seeked past (an observer then sees an unbroken run where targets lie close).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        limits: VideoLimits,
        index: FrameIndex,
        threads: int,
        budget: DecodeBudget,
        *,
        opened: tuple[InputContainer, VideoStream] | None = None,
        observer: FrameObserver | None = None,
        seek_past: int = 0,
    ) -> None:
        self.path = path
        self.observer = observer
        self.seek_past = seek_past
        self.limits = limits
        self.index = index
        self.threads = threads
        self.budget = budget
        self.deadline = time.perf_counter() + budget.seconds
        self._opened = opened if index.by_pts else None
        self._reused = False  # reading from `opened`: position unknown until the first seek
        self._skip_before: int | None = None  # packets presented before this pts may be skipped
        self._allow_skip = True
        positions = np.searchsorted(index.pts, index.keyframes)
        first = np.unique(positions, return_index=True)[1]
        self.keyframes = positions[first]
        self.keyframe_stamps = list(
            zip(index.keyframes[first], index.keyframe_dts[first], strict=True)
        )
        self.seek_by_dts = False
        self._frames: Iterator[tuple[int, av.VideoFrame]] | None = None
        self.decoded = 0
        self.corrupt = 0
        self.fallbacks = 0
        self.substituted = 0
        self.restart_reason = ""
        self.one_thread = False

    def read(self, wanted: list[int], convert: Convert) -> dict[int, np.ndarray]:
        """The converted frame at each wanted position (a neighbour where one is missing)."""
        try:
            out: dict[int, np.ndarray] | None = self._read_modes(wanted, convert, self.threads)
        except NoDecodableFrames:
            if not self.corrupt or (self.threads == 1 and not self._allow_skip):
                raise
            out = None
        if (self.corrupt or self.fallbacks) and (self.threads != 1 or self._allow_skip):
            # NOTE: frame threads lose the frames queued around a packet that fails (the
            # error, or nothing, surfaces in place of the frames), and skipped frames change
            # which frame is the last one decoded: damaged and truncated files decode again
            # on one thread, every frame.
            self.one_thread = self.threads != 1
            self._allow_skip = False
            out = self._read_modes(wanted, convert, threads=1)
        assert out is not None
        return out

    def _read_modes(
        self, wanted: list[int], convert: Convert, threads: int
    ) -> dict[int, np.ndarray]:
        by_pts = seek = self.index.by_pts
        while True:  # at most three passes: smart, sequential by timestamp, sequential by order
            try:
                return self._read_pass(wanted, convert, by_pts=by_pts, seek=seek, threads=threads)
            except _Restart as restart:
                self.restart_reason = restart.reason
                by_pts = by_pts and seek and restart.keep_pts
                seek = False

    def warnings(self) -> tuple[str, ...]:
        notes = []
        if self.corrupt:
            notes.append(f"corrupt: {self.corrupt} packets failed to decode and were skipped")
        if self.substituted:
            notes.append(f"substituted: {self.substituted} sampled frames replaced by a neighbour")
        if self.fallbacks:
            notes.append(
                f"short: {self.fallbacks} sampled frames lie past the last decodable frame "
                "and repeat it"
            )
        if self.restart_reason:
            notes.append(f"re-read sequentially: {self.restart_reason}")
        if self.one_thread:
            notes.append(
                "re-read on one decoder thread: frame threads drop frames around broken data"
            )
        return tuple(notes)

    def _read_pass(
        self,
        wanted: list[int],
        convert: Convert,
        *,
        by_pts: bool,
        seek: bool,
        threads: int,
    ) -> dict[int, np.ndarray]:
        self.corrupt = self.fallbacks = self.substituted = 0
        if self.observer is not None:
            self.observer.reset()
        opened, self._opened = self._opened, None  # only the first pass reuses it
        with contextlib.ExitStack() as stack:
            if opened is not None and seek:
                container, stream = opened
                self._reused = True
            else:
                container, stream = stack.enter_context(open_video(self.path, self.limits))
                self._reused = False
            prepare_decoder(stream, self.limits, threads)
            codec = stream.codec_context
            skip = self._allow_skip and by_pts and codec.codec.canonical_name in _SKIP_NONREF_CODECS
            try:
                return self._walk(
                    container, stream, wanted, convert, by_pts=by_pts, seek=seek, skip=skip
                )
            finally:
                # NOTE: a decode generator left suspended until after its container closes can
                # hang PyAV 18 with frame threads; close it while the container is open.
                if self._frames is not None:
                    self._frames.close()
                    self._frames = None
                self._skip_before = None
                codec.skip_frame = "DEFAULT"

    def _walk(
        self,
        container: InputContainer,
        stream: VideoStream,
        wanted: list[int],
        convert: Convert,
        *,
        by_pts: bool,
        seek: bool,
        skip: bool,
    ) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        current = -1  # position of the last decoded frame
        kept: tuple[int, np.ndarray] | None = None  # the last frame converted
        last: av.VideoFrame | None = None  # the last frame decoded
        for number, target in enumerate(wanted):
            if kept is not None and kept[0] >= target:  # a frame was missing; reuse the next
                out[target] = kept[1]
                self.substituted += kept[0] != target
                continue
            at = max(int(np.searchsorted(self.keyframes, target, side="right")) - 1, 0)
            if skip:
                self._skip_before = int(self.index.pts[target])
            # A reused container is wherever the index left it: the first target seeks too.
            fresh = self._reused and self._frames is None
            ahead = self.keyframes[at] - current - 1  # frames a seek would skip
            if fresh or (seek and ahead > self.seek_past and self.keyframes[at] > 0):
                self._frames = self._seek(container, stream, at, target)
            elif self._frames is None:
                self._frames = self._positions(container, stream, by_pts)
            for position, frame in self._frames:
                current, last = position, frame
                if position >= target:
                    kept = (position, convert(frame))
                    out[target] = kept[1]
                    self.substituted += position != target
                    break
            else:  # the data ends before the target: repeat the last frame for the rest
                if last is None:
                    raise NoDecodableFrames("the file holds a video stream but no frame decodes")
                tail = convert(last)
                for rest in wanted[number:]:
                    out[rest] = tail
                    self.fallbacks += 1
                break
        return out

    def _seek(
        self, container: InputContainer, stream: VideoStream, keyframe: int, target: int
    ) -> Iterator[tuple[int, av.VideoFrame]]:
        """Seek to keyframe number `keyframe` and decode from there, checking where it landed.

        Past the target means the index disagrees (try the decode timestamp) or the frames
        there do not decode (try up to two keyframes earlier).
        """
        for earlier in range(keyframe, max(keyframe - 3, -1), -1):
            pts, dts = self.keyframe_stamps[earlier]
            for stamp in dict.fromkeys((dts,) if self.seek_by_dts else (pts, dts)):
                if self.observer is not None:
                    self.observer.jump()
                try:
                    container.seek(int(stamp), stream=stream, backward=True)
                except av.FFmpegError:  # a damaged index (EOF, EINVAL): another stamp, or read
                    continue
                stream.codec_context.flush_buffers()
                frames = self._positions(container, stream, by_pts=True)
                first = next(frames, None)
                if first is not None and first[0] <= target:
                    self.seek_by_dts = stamp != pts
                    yield first
                    yield from frames
                    return
                frames.close()
        raise _Restart(f"seeking to frame {target} fails or lands past it", keep_pts=True)

    def _positions(
        self, container: InputContainer, stream: VideoStream, by_pts: bool
    ) -> Iterator[tuple[int, av.VideoFrame]]:
        """Decoded frames with their position in presentation order."""
        pts = self.index.pts
        strict = self.index.from_container
        previous = -1
        for order, frame in enumerate(self._decode(container, stream)):
            if by_pts:
                if frame.pts is None:
                    raise _Restart("decoded frames carry no timestamps", keep_pts=False)
                position = min(int(np.searchsorted(pts, frame.pts)), len(pts) - 1)
                if strict and pts[position] != frame.pts:
                    raise IndexMismatch(f"a frame at pts {frame.pts} is not in the index")
                if position <= previous:
                    raise _Restart(
                        "frame timestamps come out of the decoder out of order", keep_pts=False
                    )
            else:
                position = order
            previous = position
            yield position, frame

    def _decode(self, container: InputContainer, stream: VideoStream) -> Iterator[av.VideoFrame]:
        """Decode packet by packet, so one broken packet costs a few frames, not the file."""
        limits = self.limits
        codec = stream.codec_context
        skipping = False
        decoded = 0
        for packet in container.demux(stream):
            if self._skip_before is not None:
                # Frames presented before the target are not wanted: let the decoder drop
                # the ones no other frame refers to. (Frame threads copy the setting with
                # each packet they take.)
                early = packet.pts is not None and packet.pts < self._skip_before
                if early != skipping:
                    codec.skip_frame = "NONREF" if early else "DEFAULT"
                    skipping = early
            frames = decode_packet(stream, packet)
            if frames is None:
                self.corrupt += 1
                if self.corrupt > limits.max_corrupt_packets:
                    raise CorruptVideo(
                        f"{self.corrupt} packets failed to decode (limit "
                        f"{limits.max_corrupt_packets})"
                    )
                continue
            for frame in frames:
                decoded += 1
                self.decoded += 1
                if decoded > limits.max_frames:
                    raise LimitExceeded("frames", decoded, limits.max_frames, "frames")
                if frame.width * frame.height > limits.max_pixels:
                    raise LimitExceeded(
                        "pixels", frame.width * frame.height, limits.max_pixels, "px"
                    )
                if time.perf_counter() > self.deadline:
                    raise DecodeTimeout(
                        self.budget.seconds,
                        f", the time its size allows ({self.budget.frames:,} frames)",
                    )
                if self.observer is not None:
                    self.observer.frame(frame)
                yield frame


def _keyframe_positions(index: FrameIndex) -> np.ndarray:
    """Each keyframe's position in presentation order (sorted, distinct)."""
    return np.unique(np.searchsorted(index.pts, index.keyframes))
