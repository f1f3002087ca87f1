"""The decode job: an uploaded file and a recipe in, the model's views out.

The work is split at the process boundary:

- `sample_frames` (runs in a decode worker): index → plan → read only the planned frames, in
  one open of the file. It returns `SampledFrames`: each distinct sampled frame once, uint8
  (float32 for recipes that resize on floats), already rotated, resized as the recipe says
  and cut to the union of the crops, in the recipe's channel order. For a flow recipe the
  worker goes on to TV-L1 flow between each sampled frame and the next
  (`service/video/flow.py`) and sends the quantised fields instead, so flow's cost counts
  against the decode timeout. `sample_streams` does this for several recipes (a two-stream
  model's rgb and flow) reading each frame of the file once.
- `assemble_views` (runs in the parent): cuts the crops and normalises into the
  (V, C, T, H, W) float32 views. Sending uint8 frames instead of float views moves 4-7x fewer
  bytes through the pipe (30 views of 3×16×256×256 are 377 MB as float32, their 160 distinct
  256×455 frames 56 MB as uint8).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import av
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from model_store.spec import Modality, Profile, Recipe
from service.errors import TooFewFrames
from service.video import flow
from service.video.container import open_video
from service.video.index import (
    FrameIndex,
    VideoInfo,
    index_container,
    probe_video,
    with_first_frame,
)
from service.video.limits import VideoLimits
from service.video.pixels import FrameConverter
from service.video.reader import DecodeBudget, FrameReader, IndexMismatch
from service.video.sampling import CropBox, ViewPlan, plan_views
from service.video.shots import ShotBoundary, ShotRule, ShotScan, ShotTracker, detect_shots

#: With shots asked for, the reader decodes through gaps this short rather than seek past them:
#: the thumbnails then see every cut there (a seek skips only a few frames' decode), and what
#: a longer seek skips is scanned on its own.
SHOTS_DECODE_THROUGH_S = 1.0

__all__ = [
    "DecodeOptions",
    "DecodedVideo",
    "SampledFrames",
    "assemble_views",
    "decode_video",
    "plan_windows",
    "sample_frames",
    "sample_streams",
]


class DecodeOptions(BaseModel):
    """Per-request choices: which views, and how frames are decoded (how they are resized is
    the recipe's)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    profile: Profile = Profile.ACCURATE
    windows: bool = Field(False, description="Back-to-back windows over the whole video.")
    decoder_threads: int = Field(
        0, ge=0, le=64, description="0: FFmpeg picks (frame + slice threads); 1: single-threaded."
    )
    shots: ShotRule | None = Field(
        None, description="Also find the shot boundaries among the frames read (and between)."
    )


@dataclass(frozen=True)
class SampledFrames:
    """A worker's answer: distinct frames as uint8 plus everything needed to build the views.

    `frames` is (F, H, W, C), each the union of the plan's crops of one displayed frame: C = 3
    colour channels (uint8, or float32 on the same scale for `torch_bilinear` recipes), or for
    a flow recipe C = 2, the x and y grey levels of one flow field. `frame_of_slot`
    (num_clips, clip_len × k) points into it (k = flow fields per stack, 1 for frames);
    `crops` are relative to the union. `flow_s` is the part of `decode_s` spent on optical
    flow.
    """

    frames: np.ndarray
    frame_of_slot: np.ndarray
    crops: tuple[CropBox, ...]
    plan: ViewPlan
    info: VideoInfo
    frames_decoded: int
    warnings: tuple[str, ...]
    decode_s: float
    flow_s: float = 0.0
    #: With `DecodeOptions.shots`: the boundaries in the part of the video the job read
    #: (times from the first frame, as the plan's).
    shots: ShotScan | None = None


@dataclass(frozen=True)
class DecodedVideo:
    """The model input of one upload and what it stands for.

    `views` is (V, C, T, H, W) float32 with V = clips × crops, clip-major (clip 0's crops,
    then clip 1's, ...); `view_clip`, `view_start_s` and `view_end_s` describe each view.
    `degraded` flags a result built around damage (see `warnings`).
    """

    views: np.ndarray
    view_clip: np.ndarray
    view_crop: np.ndarray
    view_start_s: np.ndarray
    view_end_s: np.ndarray
    info: VideoInfo
    plan: ViewPlan
    frames_decoded: int
    warnings: tuple[str, ...]
    decode_s: float
    flow_s: float = 0.0
    #: Seconds the request waited for a free decode worker (set by `DecodePool`).
    wait_s: float = 0.0
    #: With `DecodeOptions.shots`: the shot boundaries of the part decoded.
    shots: tuple[ShotBoundary, ...] | None = None

    @property
    def degraded(self) -> bool:
        return bool(self.warnings)

    @property
    def num_views(self) -> int:
        """Views classified (`views` is empty once a streamed per_clip request is done)."""
        return len(self.view_clip)


def decode_video(
    path: str | os.PathLike[str], recipe: Recipe, options: DecodeOptions, limits: VideoLimits
) -> DecodedVideo:
    """Index, plan, decode and normalise in this process (the pool splits it across two)."""
    return assemble_views(sample_frames(path, recipe, options, limits), recipe)


def sample_frames(
    path: str | os.PathLike[str], recipe: Recipe, options: DecodeOptions, limits: VideoLimits
) -> SampledFrames:
    """Everything a decode worker does: index the file, plan the views, read their frames."""
    return sample_streams(path, (recipe,), options, limits)[0]


def sample_streams(
    path: str | os.PathLike[str],
    recipes: tuple[Recipe, ...],
    options: DecodeOptions,
    limits: VideoLimits,
    window_range: tuple[int, int] | None = None,
) -> tuple[SampledFrames, ...]:
    """`sample_frames` for several recipes at once, each frame of the file decoded once.

    Recipes of one geometry (sizes, crops, resize filter, channel order) share the converted
    frames too: a two-stream P3D's flow is computed from the very frames its RGB views show.
    One open serves the index and the first read. The moments are planned from the index and
    the sizes and crops from the first frame read (its rotation: `_Converters`). When the
    container's own index turns out wrong for the file (`IndexMismatch`), the job starts again
    from a scan of its packets.

    `window_range` (start, stop) reads only those windows of a `per_clip` plan, numbered from
    0 (the chunks of `service.windows`); the whole plan's bytes are then not held to
    `max_view_bytes`, the chunk's are.
    """
    started = time.perf_counter()
    try:
        return _sample(path, recipes, options, limits, started, True, window_range)
    except IndexMismatch:
        return _sample(path, recipes, options, limits, started, False, window_range)


def _sample(
    path: str | os.PathLike[str],
    recipes: tuple[Recipe, ...],
    options: DecodeOptions,
    limits: VideoLimits,
    started: float,
    trust_index: bool,
    window_range: tuple[int, int] | None,
) -> tuple[SampledFrames, ...]:
    with open_video(path, limits) as opened:
        indexed = index_container(*opened, os.stat(path).st_size, limits, trust_index=trust_index)
        if not indexed.info.width:  # no frame size in the header: decode one frame for it
            indexed = indexed.with_size_of(probe_video(path, limits))
        index = indexed.index
        keyframes_s = index.keyframe_times_s()
        plan_limits = limits if window_range is None else _streamed(limits)

        def whole_plans(info: VideoInfo) -> list[ViewPlan]:
            return [
                plan_views(
                    info,
                    recipe,
                    profile=options.profile,
                    windows=options.windows,
                    limits=plan_limits,
                    keyframes_s=keyframes_s,
                )
                for recipe in recipes
            ]

        def plans_for(info: VideoInfo) -> list[ViewPlan]:
            plans = whole_plans(info)
            return plans if window_range is None else [_part(p, *window_range) for p in plans]

        # The moments do not depend on the rotation: plan them now (every limit checked).
        needs: list[tuple[np.ndarray, np.ndarray | None]] = []
        for recipe, plan in zip(recipes, plans_for(indexed.info), strict=True):
            positions = index.position_of(plan.times_s)
            pairs = None
            if recipe.modality == Modality.FLOW:
                if index.num_frames < 2:
                    raise TooFewFrames(index.num_frames, 2, "an optical-flow model")
                pairs = flow.flow_pairs(positions, index.num_frames, recipe.flow_frames_per_stack)
                positions = pairs
            needs.append((np.unique(positions), pairs))
        wanted = np.unique(np.concatenate([positions for positions, _ in needs]))
        rule = options.shots
        tracker = ShotTracker(rule) if rule is not None and rule.rides_along else None
        seek_past = round(indexed.info.fps * SHOTS_DECODE_THROUGH_S) if tracker else 0
        budget = DecodeBudget.of(indexed, wanted.tolist(), limits, seek_past)
        convert = _Converters(indexed.info, plans_for, recipes, options, limits)
        reader = FrameReader(
            path,
            limits,
            index,
            options.decoder_threads,
            budget,
            opened=opened,
            observer=tracker,
            seek_past=seek_past,
        )
        arrays = reader.read(wanted.tolist(), convert)
    shots = None
    if rule is not None:
        span = _span(whole_plans(indexed.info)[0], window_range)
        shots = _shots(path, limits, rule, tracker, index, span)
    decoded_s = time.perf_counter() - started

    results = []
    plans, info = convert.plans, convert.info
    for (positions, pairs), recipe, plan, which in zip(
        needs, recipes, plans, convert.which, strict=True
    ):
        frames = np.stack([arrays[p][which] for p in positions.tolist()])
        flow_started = time.perf_counter()
        if pairs is None:
            frame_of_slot = np.searchsorted(positions, index.position_of(plan.times_s))
        else:
            grey = flow.to_grey(frames, recipe.channel_order)
            fields, frame_of_slot = flow.solve_pairs(
                grey, np.searchsorted(positions, pairs), recipe.flow_bound
            )
            frames = np.ascontiguousarray(fields.transpose(0, 2, 3, 1))
        flow_s = time.perf_counter() - flow_started if pairs is not None else 0.0
        results.append(
            SampledFrames(
                frames=frames,
                frame_of_slot=frame_of_slot,
                crops=convert.converters[which].crops,
                plan=plan,
                info=info,
                frames_decoded=reader.decoded,
                warnings=indexed.warnings + reader.warnings(),
                decode_s=decoded_s + flow_s,
                flow_s=flow_s,
                shots=shots,
            )
        )
    return tuple(results)


def _span(plan: ViewPlan, window_range: tuple[int, int] | None) -> tuple[float, float]:
    """The stretch (start, end] whose shot boundaries a job reports: from its first window's
    start (the video's, for the first) to the next job's first window (the end, for the last),
    so the jobs of one plan report each boundary once."""
    if window_range is None:
        return 0.0, math.inf
    start, stop = window_range
    clips = plan.clips
    return (
        clips[start].start_s if start > 0 else 0.0,
        clips[stop].start_s if stop < len(clips) else math.inf,
    )


def _shots(
    path: str | os.PathLike[str],
    limits: VideoLimits,
    rule: ShotRule,
    tracker: ShotTracker | None,
    index: FrameIndex,
    span: tuple[float, float],
) -> ShotScan:
    """The boundaries in `span` (start, end], times from the first frame: from the frames
    the reader decoded (`tracker`), else a scan of their own."""
    origin = float(index.pts[0] * index.time_base) if index.by_pts else 0.0
    start, end = span[0] + origin, span[1] + origin
    if tracker is not None:
        last = float(index.pts[-1] * index.time_base) if index.by_pts else math.inf
        scan = tracker.finish(path, limits, start, end, last)
    else:
        scan = detect_shots(path, limits, rule, start, end)
    moved = tuple(replace(b, time_s=b.time_s - origin) for b in scan.boundaries)
    return replace(scan, boundaries=moved)


def plan_windows(
    path: str | os.PathLike[str], recipe: Recipe, options: DecodeOptions, limits: VideoLimits
) -> ViewPlan:
    """Every window of a `per_clip` plan, from the file's index, reading no pixels (the first
    job of `service.windows`; its times and count, not its sizes, which the rotation of the
    first decoded frame settles)."""
    with open_video(path, limits) as opened:
        indexed = index_container(*opened, os.stat(path).st_size, limits, trust_index=True)
        return plan_views(
            indexed.info,
            recipe,
            profile=options.profile,
            windows=options.windows,
            limits=_streamed(limits),
            keyframes_s=indexed.index.keyframe_times_s(),
        )


def _streamed(limits: VideoLimits) -> VideoLimits:
    """A streamed plan's limits: its chunks' bytes are bounded (`service.windows`), not the
    whole plan's."""
    return limits.model_copy(update={"max_view_bytes": 2**62})


def _part(plan: ViewPlan, start: int, stop: int) -> ViewPlan:
    """The plan of clips `start` to `stop` only, numbered from 0."""
    clips = plan.clips[start:stop]
    return replace(plan, clips=tuple(replace(c, index=i) for i, c in enumerate(clips)))


class _Converters:
    """The frame converters of several recipes, applied to each decoded frame once each.

    They are made from the first frame converted: the display rotation sits in side data
    PyAV 18 only exposes on decoded frames, and the spatial plan (resized size, crops) depends
    on it, the moments do not. So the job plans the moments first, reads, and makes the
    spatial plans from the first wanted frame, rather than decoding an extra frame up front
    (a single-threaded keyframe decode: ~55 ms at 1080p).
    """

    def __init__(
        self,
        info: VideoInfo,
        plans_for: Callable[[VideoInfo], list[ViewPlan]],
        recipes: tuple[Recipe, ...],
        options: DecodeOptions,
        limits: VideoLimits,
    ) -> None:
        self.info = info
        self._plans_for = plans_for
        self._recipes = recipes
        self._options = options
        self._limits = limits
        self.plans: list[ViewPlan] = []
        self.converters: list[FrameConverter] = []
        self.which: list[int] = []  # each recipe's converter

    def __call__(self, frame: av.VideoFrame) -> tuple[np.ndarray, ...]:
        if not self.converters:
            self._make(frame)
        return tuple(convert(frame) for convert in self.converters)

    def _make(self, frame: av.VideoFrame) -> None:
        self.info = with_first_frame(self.info, frame, self._limits)
        self.plans = self._plans_for(self.info)
        keys: list[tuple] = []
        for recipe, plan in zip(self._recipes, self.plans, strict=True):
            key = (
                plan.frame_size,
                plan.prescaled_size,
                plan.rotation,
                plan.crops,
                recipe.resize_filter,
                recipe.channel_order,
            )
            if key not in keys:
                keys.append(key)
                self.converters.append(FrameConverter(plan, recipe, self._options.decoder_threads))
            self.which.append(keys.index(key))


def assemble_views(
    sampled: SampledFrames, recipe: Recipe, out: np.ndarray | None = None
) -> DecodedVideo:
    """Cut the crops and normalise: (V, C, T, H, W) float32, clip-major.

    `(pixel / 255 * pixel_scale - mean) / std` per channel, as one float32 multiply-subtract
    per element written straight into the views (0.1-0.4 s for 30 views of 16×256×256, 360
    MiB). `out` lets a caller write them into a buffer of its own, such as a batch slice.
    """
    plan = sampled.plan
    size = recipe.crop_size
    num_clips = sampled.frame_of_slot.shape[0]
    stack = recipe.flow_frames_per_stack if recipe.modality == Modality.FLOW else 1
    slots = sampled.frame_of_slot.reshape(num_clips, -1, stack)  # (clip, step, field of step)
    clip_len, depth = slots.shape[1], sampled.frames.shape[-1]
    std = np.array(recipe.std, dtype=np.float64)
    scales = (recipe.pixel_scale / 255.0 / std).astype(np.float32)
    offsets = (np.array(recipe.mean, dtype=np.float64) / std).astype(np.float32)
    shape = (plan.num_views, stack * depth, clip_len, size, size)
    if out is not None and (out.shape != shape or out.dtype != np.float32):
        raise ValueError(f"out must be float32 {shape}, got {out.dtype} {out.shape}")
    views = np.empty(shape, dtype=np.float32) if out is None else out
    for clip in range(num_clips):
        for j in range(stack):
            # Flow stacks interleave fields on channels: x1, y1, x2, y2, ... (depth 2).
            frames = sampled.frames[slots[clip, :, j]]
            for k, crop in enumerate(sampled.crops):
                cut = frames[:, crop.top : crop.top + size, crop.left : crop.left + size]
                view = clip * len(sampled.crops) + k
                for source in range(depth):
                    channel = j * depth + source
                    out = views[view, channel]
                    np.multiply(cut[..., source], scales[channel], out=out)
                    out -= offsets[channel]
    clips = plan.clips
    return DecodedVideo(
        views=views,
        view_clip=np.array(plan.view_clips, dtype=np.int64),
        view_crop=np.array(plan.view_crops, dtype=np.int64),
        view_start_s=np.array([clips[i].start_s for i in plan.view_clips]),
        view_end_s=np.array([clips[i].end_s for i in plan.view_clips]),
        info=sampled.info,
        plan=plan,
        frames_decoded=sampled.frames_decoded,
        warnings=sampled.warnings,
        decode_s=sampled.decode_s,
        flow_s=sampled.flow_s,
        shots=None if sampled.shots is None else sampled.shots.boundaries,
    )
