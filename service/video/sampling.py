"""Test-time view sampling: which moments of a video and which crops of each frame.

Everything here is a pure function of a `VideoInfo` and a `Recipe`; the decoder carries the
plan out. Temporal sampling follows mmaction2's `SampleFrames` in test mode
(open-mmlab/mmaction2@786d570, mmaction/datasets/transforms/loading.py):

- uniform clips: `num_clips` clip starts spread evenly from the first frame to the last
  possible start, `np.round(arange(n) * max_offset / (n - 1))`; a single clip is centred
  (`max_offset // 2`); a video shorter than a clip loops (frame slots taken modulo its length);
- segments (TSN/TSM, mmaction2's `clip_len == 1` branch with `clip_len` segments): the video
  is cut into `clip_len` equal segments and each clip takes one frame per segment, clip 0 the
  middle; `num_clips` = 2 adds the segment starts (mmaction2's `twice_sample`), and larger
  counts spread the shifts evenly, clip k at fraction (1/2 + k/num_clips) mod 1 of a segment.

mmaction2 counts frames; a frame slot here is a moment on a nominal timeline of
`num_frames` equal slots over the duration, and the decoder takes the frame on screen at
that moment. On constant-rate video that is the same frame; on variable-rate video it is the
frame a viewer saw then, not the n-th frame, which would crowd samples into fast stretches.

Spatially the displayed (rotated) frame is resized so its short side is `short_side`
(mmcv's `int(x * scale + 0.5)` rounding), then cut into one centre crop or three crops
along the long side (left/top, centre, right/bottom; mmaction2's `ThreeCrop` offsets).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from model_store.spec import Modality, Profile, Recipe, Sampling
from service.errors import LimitExceeded
from service.video.index import VideoInfo
from service.video.limits import VideoLimits

__all__ = [
    "Clip",
    "CropBox",
    "Profile",
    "ViewPlan",
    "crop_boxes",
    "plan_views",
    "resize_short_side",
    "sample_segments",
    "sample_uniform",
    "sample_windows",
    "snap_start",
]


@dataclass(frozen=True)
class Clip:
    """One clip: `clip_len` frame slots and the stretch of video it stands for."""

    index: int
    slots: tuple[int, ...]
    times_s: tuple[float, ...]
    start_s: float
    end_s: float


@dataclass(frozen=True)
class CropBox:
    """A square crop of the resized, displayed frame."""

    top: int
    left: int
    size: int


@dataclass(frozen=True)
class ViewPlan:
    """What to decode and how to cut it: views are clips × crops, clip-major.

    Times are seconds from the first frame; `frame_size` is the (height, width) of a
    displayed frame after the short-side resize, which the crops index into. `snap_s` is set
    when a `fast` clip was moved to start on a keyframe: by how many seconds (negative:
    earlier than the centred clip).
    """

    clips: tuple[Clip, ...]
    crops: tuple[CropBox, ...]
    frame_size: tuple[int, int]
    rotation: int
    num_frames: int
    duration_s: float
    snap_s: float | None = None

    @property
    def num_views(self) -> int:
        return len(self.clips) * len(self.crops)

    @property
    def clip_len(self) -> int:
        return len(self.clips[0].slots)

    @property
    def view_clips(self) -> tuple[int, ...]:
        """The clip index of each view: (clip0, clip0, clip0, clip1, ...) for three crops."""
        return tuple(clip.index for clip in self.clips for _ in self.crops)

    @property
    def view_crops(self) -> tuple[int, ...]:
        return tuple(crop for _ in self.clips for crop in range(len(self.crops)))

    @property
    def times_s(self) -> np.ndarray:
        """(num_clips, clip_len) target moments, seconds from the first frame."""
        return np.array([clip.times_s for clip in self.clips], dtype=np.float64)


def plan_views(
    info: VideoInfo,
    recipe: Recipe,
    *,
    profile: Profile = Profile.ACCURATE,
    windows: bool = False,
    limits: VideoLimits,
    keyframes_s: Sequence[float] = (),
) -> ViewPlan:
    """Plan the views of `info` under `recipe`.

    `keyframes_s` (seconds from the first frame) lets a `fast` plan of a uniform-sampling
    recipe start its one clip on the keyframe nearest the centred clip where the clip fits:
    a decoder then decodes about the clip's own frames instead of everything from the
    keyframe before it (up to a whole GOP). The plan's `snap_s` says how far it moved.
    Segment sampling spans the whole video, and `accurate` follows the protocol exactly: they
    never move.

    `windows=True` replaces the recipe's clips with consecutive non-overlapping windows of
    `clip_len × frame_interval` slots over the whole video (a tail shorter than a window is
    left out; a video shorter than one window gives one looped window), each sampled like a
    clip. Raises `LimitExceeded` past `limits.max_windows` windows or `limits.max_view_bytes`
    of float32 views.
    """
    if recipe.modality == Modality.RGB and recipe.in_channels != 3:
        raise ValueError(
            f"an RGB recipe with {recipe.in_channels} input channels; frames have 3 (a flow "
            "net's recipe says modality: flow)"
        )
    if profile not in ("accurate", "fast"):
        raise ValueError(f"profile must be 'accurate' or 'fast', got {profile!r}")
    num_frames = max(1, info.num_frames)
    duration = info.duration_s if info.duration_s > 0 else num_frames / (info.fps or 30.0)
    slot_s = duration / num_frames
    num_clips = recipe.num_clips if profile == "accurate" else 1
    num_crops = recipe.num_crops if profile == "accurate" else 1
    snap_s: float | None = None

    if windows:
        slots, spans = sample_windows(
            num_frames, recipe.clip_len, recipe.frame_interval, recipe.sampling
        )
        if len(slots) > limits.max_windows:
            raise LimitExceeded("windows", len(slots), limits.max_windows, "windows")
    elif recipe.sampling == Sampling.SEGMENTS:
        slots = sample_segments(num_frames, recipe.clip_len, num_clips)
        spans = np.array([[0, num_frames]] * num_clips)
    else:
        slots = sample_uniform(num_frames, recipe.clip_len, recipe.frame_interval, num_clips)
        span = (recipe.clip_len - 1) * recipe.frame_interval + 1
        if profile == "fast" and len(keyframes_s):
            start = snap_start(keyframes_s, slot_s, int(slots[0, 0]), num_frames - span)
            if start is not None and start != slots[0, 0]:
                snap_s = (start - int(slots[0, 0])) * slot_s
                slots = slots - slots[0, 0] + start
        spans = np.stack([slots[:, 0], np.minimum(slots[:, 0] + span, num_frames)], axis=1)
        spans[slots[:, 0] + span > num_frames] = (0, num_frames)  # looped: the whole video

    clips = tuple(
        Clip(
            index=i,
            slots=tuple(int(s) for s in row),
            times_s=tuple(float((s + 0.5) * slot_s) for s in row),
            start_s=float(start * slot_s),
            end_s=float(end * slot_s),
        )
        for i, (row, (start, end)) in enumerate(zip(slots, spans, strict=True))
    )
    view_bytes = (
        len(slots) * num_crops * recipe.in_channels * recipe.clip_len * recipe.crop_size**2 * 4
    )
    if view_bytes > limits.max_view_bytes:
        raise LimitExceeded("view_bytes", view_bytes, limits.max_view_bytes, "bytes")
    frame_size = resize_short_side(*info.display_size, recipe.short_side)
    return ViewPlan(
        clips=clips,
        crops=crop_boxes(frame_size, recipe.crop_size, num_crops),
        frame_size=frame_size,
        rotation=info.rotation,
        num_frames=num_frames,
        duration_s=duration,
        snap_s=snap_s,
    )


def snap_start(
    keyframes_s: Sequence[float], slot_s: float, centred: int, last_start: int
) -> int | None:
    """The start slot nearest `centred` whose moment shows a keyframe, among those where the
    clip fits (≤ `last_start`); None when none does."""
    # A slot's moment is its middle: the first slot whose moment is at or after a keyframe
    # shows that keyframe.
    starts = np.ceil(np.asarray(keyframes_s, dtype=np.float64) / slot_s - 0.5 - 1e-9)
    starts = starts[(starts >= 0) & (starts <= last_start)].astype(np.int64)
    if not len(starts):
        return None
    return int(starts[np.argmin(np.abs(starts - centred))])


def sample_uniform(
    num_frames: int, clip_len: int, frame_interval: int, num_clips: int
) -> np.ndarray:
    """(num_clips, clip_len) frame slots of evenly spread clips; short videos loop."""
    span = (clip_len - 1) * frame_interval + 1
    max_offset = max(num_frames - span, 0)
    if num_clips > 1:
        offset_between = max_offset / float(num_clips - 1)
        offsets = np.round(np.arange(num_clips) * offset_between).astype(np.int64)
    else:
        offsets = np.array([max_offset // 2], dtype=np.int64)
    slots = offsets[:, None] + np.arange(clip_len)[None, :] * frame_interval
    return np.mod(slots, num_frames)


def sample_segments(num_frames: int, num_segments: int, num_clips: int) -> np.ndarray:
    """(num_clips, num_segments) slots: one frame per segment, clip k shifted by (1/2 + k/n)."""
    segment = num_frames / float(num_segments)
    starts = np.arange(num_segments) * segment
    shifts = [(0.5 + k / num_clips) % 1.0 for k in range(num_clips)]
    # NOTE: mmaction2 adds `avg_interval / 2.0` and truncates with astype(int); same here.
    return np.stack([(starts + segment * shift).astype(np.int64) for shift in shifts])


def sample_windows(
    num_frames: int, clip_len: int, frame_interval: int, sampling: Sampling
) -> tuple[np.ndarray, np.ndarray]:
    """Slots (num_windows, clip_len) and [start, end) spans of back-to-back windows."""
    length = clip_len * frame_interval
    count = max(1, num_frames // length)
    starts = np.arange(count) * length
    if sampling == Sampling.SEGMENTS:
        inner = (np.arange(clip_len) * frame_interval + frame_interval / 2.0).astype(np.int64)
    else:
        inner = np.arange(clip_len) * frame_interval
    slots = np.mod(starts[:, None] + inner[None, :], num_frames)
    spans = np.stack([starts, np.minimum(starts + length, num_frames)], axis=1)
    return slots, spans


def resize_short_side(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(height, width) with the short side at `short_side`, aspect kept (mmcv rounding)."""
    scale = short_side / min(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def crop_boxes(frame_size: tuple[int, int], crop_size: int, num_crops: int) -> tuple[CropBox, ...]:
    """The centre crop, or three crops spread along the long side and centred across it."""
    height, width = frame_size
    top, left = (height - crop_size) // 2, (width - crop_size) // 2
    if num_crops == 1:
        return (CropBox(top, left, crop_size),)
    if width >= height:
        step = (width - crop_size) // 2
        return tuple(CropBox(top, k * step, crop_size) for k in range(3))
    step = (height - crop_size) // 2
    return tuple(CropBox(k * step, left, crop_size) for k in range(3))
