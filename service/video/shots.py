"""Shot boundaries: where an edited video cuts from one camera to another, found by FFmpeg's
scene-change detector (`scdet`) on thumbnails, in a decode worker.

    frames ─ scale to 32 px wide (area average: noise and coding artefacts wash out)
             ├─ scdet                   hard cuts: a frame unlike the frame before it
             └─ framestep=N ─ scdet     gradual transitions (cross-fades, wipes): a frame
                                        unlike the one N frames before it

`scdet` scores a frame by how much its mean absolute difference to the previous frame jumps
against the previous frame's (0-100): steady motion scores low, a new scene high. The gradual
branch compares frames N apart (N frames ≈ `gradual_s`), so a dissolve shorter than that looks
like a cut there; a gradual boundary within N frames of a hard one is the same boundary.

Hard cuts ride along the windows' own decode (`ShotTracker`): the frames the frame reader
decodes anyway pass through the thumbnail filter too, so the scan costs thumbnails, not a second
decode. Where the reader seeks past a stretch, and past the last window, `detect_shots` scans
just that stretch (`start_s < t ≤ end_s`): it decodes from the keyframe before it, with N frames
of history, and reports the boundaries that fall inside it. Gradual detection needs every frame
in order, so it (and `all_frames`) scans the job's time range on its own.

On H.264 and HEVC the frames no other frame refers to are not decoded (`skip_frame` NONREF),
which halves the cost: encoders code a scene cut as a reference frame (x264/x265 open an I-frame
there), so a hard cut is still found at its frame. `ShotRule(all_frames=True)` decodes every
frame for streams coded otherwise; so does gradual detection (framestep counts frames).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Literal

import av
from av.filter.context import FilterContext
from pydantic import BaseModel, ConfigDict, Field

from service.video.container import decode_packet, open_video, prepare_decoder
from service.video.limits import VideoLimits

__all__ = [
    "ShotBoundary",
    "ShotRule",
    "ShotScan",
    "ShotTracker",
    "confidence",
    "detect_shots",
    "prune",
    "shot_spans",
]

#: Codecs whose non-reference frames the scan may skip (as the frame reader does).
_SKIP_NONREF_CODECS = ("h264", "hevc")
#: Thumbnail width: enough to tell scenes apart, small enough to cost nothing next to decoding.
THUMBNAIL_WIDTH = 32


class ShotRule(BaseModel):
    """How shot boundaries are found (`features=shots`, `/classify?shots=true`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float = Field(
        3.5,
        gt=0,
        le=100,
        description="scdet score (0-100) a frame needs to start a new shot. Lower finds more "
        "cuts between similar-looking scenes, and more false ones in fast motion.",
    )
    gradual_s: float = Field(
        0.0,
        ge=0,
        le=5,
        description="Also find cross-fades up to this long, in seconds (0: hard cuts only). Off "
        "by default: content that changes a lot within gradual_s (strobing, blinking, fast "
        "pans) then opens false shots. Decodes every frame.",
    )
    gradual_threshold: float = Field(
        8.0, gt=0, le=100, description="scdet score between frames gradual_s apart."
    )
    min_shot_s: float = Field(
        0.4, ge=0, description="A boundary closer than this to the previous one is dropped."
    )
    all_frames: bool = Field(
        False, description="Decode every frame (by default H.264/HEVC skip non-reference ones)."
    )

    @property
    def rides_along(self) -> bool:
        """Hard cuts only, in whatever frames a reader decodes: `ShotTracker` applies."""
        return not self.all_frames and self.gradual_s == 0


@dataclass(frozen=True)
class ShotBoundary:
    """Where a new shot starts: `time_s` is the first frame of the new shot."""

    time_s: float
    score: float
    kind: Literal["cut", "gradual"]


@dataclass(frozen=True)
class ShotScan:
    """A scanned time range's boundaries, and the frames the scan decoded itself."""

    boundaries: tuple[ShotBoundary, ...]
    frames_decoded: int
    ended: bool  # the stream ended before the range did


def detect_shots(
    path: str | os.PathLike[str],
    limits: VideoLimits,
    rule: ShotRule,
    start_s: float = 0.0,
    end_s: float = math.inf,
    threads: int = 1,
) -> ShotScan:
    """The shot boundaries with `start_s < time_s ≤ end_s` (a decode job: runs in a worker).
    `threads` decoder threads (1 by default: the scan runs beside the views' decode)."""
    detectors: _Detectors | None = None
    decoded, ended = 0, True
    with open_video(path, limits) as (container, stream):
        prepare_decoder(stream, limits, threads)
        # Thumbnails do not need the deblocking filter (H.264/HEVC skip it; others ignore this).
        stream.codec_context.options = {**stream.codec_context.options, "skip_loop_filter": "all"}
        every_frame = rule.all_frames or rule.gradual_s > 0  # framestep counts frames
        if not every_frame and stream.codec_context.codec.canonical_name in _SKIP_NONREF_CODECS:
            stream.codec_context.skip_frame = "NONREF"
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        step = max(2, round(rule.gradual_s * fps)) if rule.gradual_s > 0 else 0
        history_s = (step + 2) / fps
        if start_s > 0 and stream.time_base is not None:
            target = max(0.0, start_s - history_s)
            container.seek(int(target / stream.time_base), stream=stream, backward=True)
        for packet in container.demux(stream):
            frames = decode_packet(stream, packet)
            for frame in frames or ():
                if frame.time is None:
                    continue
                decoded += 1
                detectors = detectors or _Detectors(frame, rule, step)
                detectors.push(frame)
                if frame.time > end_s:
                    ended = False
                    break
            else:
                continue
            break
    if detectors is None:
        return ShotScan((), decoded, ended)
    detectors.drain()
    merged = _merge(detectors.cuts, detectors.gradual, rule)
    found = [b for b in merged if start_s < b.time_s <= end_s]
    return ShotScan(tuple(found), decoded, ended)


class ShotTracker:
    """Hard cuts in the frames a `FrameReader` decodes for the windows (its `observer`): each
    run of consecutively decoded frames goes through the thumbnail detector; `finish` scans
    what the runs leave out (a seek's jump, the tail past the last window) with
    `detect_shots`, so the answer is a whole-range scan's at a fraction of its decode.

    Frames the reader decodes beyond a full scan's (the sampled non-reference frames) only
    add comparisons; a cut is a reference frame, found where a full scan finds it."""

    def __init__(self, rule: ShotRule) -> None:
        if not rule.rides_along:
            raise ValueError("gradual or all-frame shot rules scan on their own")
        self.rule = rule
        self.reset()

    def reset(self) -> None:
        """The reader starts its pass again: forget what this one saw."""
        self._detectors: _Detectors | None = None
        self._cuts: list[ShotBoundary] = []
        self._runs: list[list[float]] = []  # [first, last] frame time of each run

    def jump(self) -> None:
        """The reader seeks: the next frame does not follow the last one."""
        if self._detectors is not None:
            self._detectors.drain()
            self._cuts.extend(self._detectors.cuts)
            self._detectors = None

    def frame(self, frame: av.VideoFrame) -> None:
        if frame.time is None:
            return
        if self._detectors is None:
            self._detectors = _Detectors(frame, self.rule, 0)
            self._runs.append([frame.time, frame.time])
        self._detectors.push(frame)
        run = self._runs[-1]
        run[1] = max(run[1], frame.time)

    def finish(
        self,
        path: str | os.PathLike[str],
        limits: VideoLimits,
        start_s: float,
        end_s: float,
        last_frame_s: float,
    ) -> ShotScan:
        """The boundaries with `start_s < t ≤ end_s` (the stream's own times), scanning the
        stretches no run covered; `last_frame_s` is the time of the video's last frame."""
        self.jump()
        found = [c for c in self._cuts if start_s < c.time_s <= end_s]
        decoded = 0
        for low, high in _uncovered(self._runs, start_s, min(end_s, last_frame_s)):
            scan = detect_shots(path, limits, self.rule, low, high)
            found.extend(scan.boundaries)
            decoded += scan.frames_decoded
        return ShotScan(tuple(prune(found, self.rule)), decoded, True)


def _uncovered(runs: list[list[float]], start_s: float, end_s: float) -> list[tuple[float, float]]:
    """The parts of (start_s, end_s] where no run can see a boundary: a run of frames
    `first..last` tells of boundaries in (first, last]."""
    gaps, reached = [], start_s
    for first, last in sorted(runs):
        if first > reached and reached < end_s:
            gaps.append((reached, min(first, end_s)))
        reached = max(reached, last)
    if reached < end_s:
        gaps.append((reached, end_s))
    return gaps


def shot_spans(
    boundaries: list[ShotBoundary], duration_s: float
) -> list[tuple[float, float, ShotBoundary | None]]:
    """Shots as (start_s, end_s, the boundary that opened it; None for the first), covering
    [0, duration_s]."""
    spans: list[tuple[float, float, ShotBoundary | None]] = []
    start, opened_by = 0.0, None
    for boundary in sorted(boundaries, key=lambda b: b.time_s):
        if boundary.time_s <= start or boundary.time_s >= duration_s:
            continue
        spans.append((start, boundary.time_s, opened_by))
        start, opened_by = boundary.time_s, boundary
    spans.append((start, duration_s, opened_by))
    return spans


def confidence(boundary: ShotBoundary) -> float:
    """A boundary's score mapped to 0..1: 0.5 at the threshold's typical value, near 1 for a
    cut to an unrelated scene (scdet ≥ 20)."""
    return float(1 - math.exp(-boundary.score / 5.0))


class _Detectors:
    """The thumbnail filter graph: frames in, hard-cut and gradual boundaries out. Built on
    the first decoded frame (the decoder's output format is known only then)."""

    def __init__(self, first: av.VideoFrame, rule: ShotRule, step: int):
        # NOTE: the graph owns its filter contexts; it must live as long as they are used.
        self.graph = graph = av.filter.Graph()
        self.source = graph.add_buffer(
            width=first.width,
            height=first.height,
            format=first.format.name,
            time_base=first.time_base,
        )
        scale = graph.add("scale", f"{THUMBNAIL_WIDTH}:-2:flags=area")
        self.source.link_to(scale)
        cut_detector = graph.add("scdet", f"threshold={rule.threshold}")
        self.cut_sink = graph.add("buffersink")
        self.gradual_sink: FilterContext | None = None
        if step:
            split = graph.add("split", "2")
            scale.link_to(split)
            split.link_to(cut_detector, 0, 0)
            decimate = graph.add("framestep", str(step))
            split.link_to(decimate, 1, 0)
            gradual_detector = graph.add("scdet", f"threshold={rule.gradual_threshold}")
            self.gradual_sink = graph.add("buffersink")
            decimate.link_to(gradual_detector)
            gradual_detector.link_to(self.gradual_sink)
        else:
            scale.link_to(cut_detector)
        cut_detector.link_to(self.cut_sink)
        graph.configure()
        self.cuts: list[ShotBoundary] = []
        self.gradual: list[ShotBoundary] = []

    def push(self, frame: av.VideoFrame) -> None:
        self.source.push(frame)
        # scdet passes each frame on: one pull per push (an empty sink raises, which costs
        # as much as the thumbnail); the gradual branch keeps one frame in N.
        _pull(self.cut_sink, self.cuts, "cut", at_most=1)
        if self.gradual_sink is not None:
            _pull(self.gradual_sink, self.gradual, "gradual")

    def drain(self) -> None:
        """Take what the graph still holds (before reading `cuts` and `gradual`)."""
        _pull(self.cut_sink, self.cuts, "cut")
        if self.gradual_sink is not None:
            _pull(self.gradual_sink, self.gradual, "gradual")


def _pull(
    sink: FilterContext,
    found: list[ShotBoundary],
    kind: Literal["cut", "gradual"],
    at_most: float = math.inf,
) -> None:
    pulled = 0
    while pulled < at_most:
        try:
            frame = sink.pull()
        except (av.BlockingIOError, av.EOFError):
            return
        pulled += 1
        metadata = frame.metadata
        if "lavfi.scd.time" in metadata and frame.time is not None:
            found.append(ShotBoundary(frame.time, float(metadata["lavfi.scd.score"]), kind))


def _merge(
    cuts: list[ShotBoundary], gradual: list[ShotBoundary], rule: ShotRule
) -> list[ShotBoundary]:
    """Hard cuts, plus the gradual boundaries no hard cut explains (one gradual detection
    within gradual_s of a cut is that cut seen N frames apart), at least min_shot_s apart."""
    window = rule.gradual_s + 1e-6
    merged = list(cuts)
    for boundary in gradual:
        if all(abs(boundary.time_s - cut.time_s) > window for cut in cuts):
            # The transition ended by this frame and began gradual_s before: its middle.
            middle = boundary.time_s - rule.gradual_s / 2
            merged.append(ShotBoundary(middle, boundary.score, "gradual"))
    return prune(merged, rule)


def prune(boundaries: list[ShotBoundary], rule: ShotRule) -> list[ShotBoundary]:
    """Boundaries in time order, one per `min_shot_s` (the stronger of two closer ones):
    also what joins the scans of a video's parts."""
    kept: list[ShotBoundary] = []
    for boundary in sorted(boundaries, key=lambda b: b.time_s):
        if kept and boundary.time_s - kept[-1].time_s < rule.min_shot_s:
            if boundary.score > kept[-1].score:
                kept[-1] = boundary
            continue
        kept.append(boundary)
    return kept
