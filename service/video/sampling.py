"""Test-time view sampling: which moments of a video and which crops of each frame.

Everything here is a pure function of a `VideoInfo` and a `Recipe`; the decoder carries the
plan out. Each temporal sampler is one reference's test code, named by `recipe.sampling`:

- `uniform`: mmaction2 `SampleFrames._get_test_clips` (open-mmlab/mmaction2@4d6c934,
  mmaction/datasets/transforms/loading.py): `num_clips` clip starts spread evenly from the
  first frame to the last possible start, `np.round(arange(n) * max_offset / (n - 1))`; a single
  clip is centred (`max_offset // 2`); a video shorter than a clip loops (slots modulo its
  length);
- `segments` (TSN/TSM, the `clip_len == 1` branch with `clip_len` segments): the video is cut
  into `clip_len` equal segments and each clip takes one frame per segment, clip 0 the middle;
  `num_clips` = 2 adds the segment starts (`twice_sample`), larger counts spread the shifts
  evenly, clip k at fraction (1/2 + k/num_clips) mod 1 of a segment;
- `slowfast`: PySlowFast `decoder.decode` and `temporal_sampling` (facebookresearch/SlowFast@
  287ec00, slowfast/datasets/decoder.py, the whole-video path): a clip spans
  `tau × T / target_fps × fps` frames, clip i of n starts at `delta × i / n` with
  `delta = max(frames - span, 0)`, its frames are `torch.linspace(start, start + span - 1, T)`
  clamped to the video and truncated (`.long()`): no looping;
- `slowfast_segments`: PySlowFast's Something-Something `get_seq_frames` in test mode:
  `clip_len` segments of `(n - 1) / clip_len` frames, `(round(s·i) + round(s·(i + 1))) // 2`;
- `sliding`: 3D-ResNets-PyTorch `SlidingWindow(clip_len, clip_len)` over every frame
  (temporal_transforms.py), the tail loop-padded (`LoopPadding`): every window is a view.

`fast` is actserve's own profile, not a paper protocol: the sampler's one clip nearest the middle
of the video (PySlowFast's single clip starts at `delta / 2`, a sliding window at
`(frames - clip_len) // 2`) with the centre crop. `windows=True` (`per_clip`) takes back-to-back
windows over the whole video, sampled inside like a clip, the tail as `recipe.window_tail` says.

A frame slot is a moment on a nominal timeline of `num_frames` equal slots over the duration,
and the decoder takes the frame on screen at that moment. On constant-rate video that is the
same frame as counting; on variable-rate video it is the frame a viewer saw then, not the n-th
frame, which would crowd samples into fast stretches.

Spatially the displayed (rotated) frame is optionally pre-scaled (`recipe.prescale`), then
resized so its short side is `short_side` with the reference's rounding (or stretched to
`stretch_to`), then cut into one centre crop or three crops along the long side with the
reference's offsets (`recipe.crop_rule`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from model_store.spec import (
    CropRule,
    Modality,
    PreScale,
    Profile,
    Recipe,
    Sampling,
    SizeRounding,
    WindowTail,
)
from service.errors import LimitExceeded
from service.video.index import VideoInfo
from service.video.limits import VideoLimits

__all__ = [
    "Clip",
    "CropBox",
    "Profile",
    "ViewPlan",
    "crop_boxes",
    "frame_geometry",
    "plan_views",
    "prescale_size",
    "resize_short_side",
    "sample_segments",
    "sample_slowfast",
    "sample_slowfast_segments",
    "sample_uniform",
    "sample_windows",
    "slowfast_span",
    "snap_start",
    "torch_linspace",
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
    displayed frame after the resize, which the crops index into; `prescaled_size` is the
    (height, width) of the reference's pre-scale before that resize, if its recipe has one.
    `snap_s` is set when a `fast` clip was moved to start on a keyframe: by how many seconds
    (negative: earlier than the centred clip).
    """

    clips: tuple[Clip, ...]
    crops: tuple[CropBox, ...]
    frame_size: tuple[int, int]
    rotation: int
    num_frames: int
    duration_s: float
    prescaled_size: tuple[int, int] | None = None
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
    `fast` is actserve's own profile; every other sampler, and `accurate`, follow their
    protocol exactly: they never move.

    `windows=True` replaces the recipe's clips with back-to-back windows over the whole video
    (`sample_windows`). Raises `LimitExceeded` past `limits.max_windows` windows (per_clip, or a
    sliding-window protocol) or `limits.max_view_bytes` of float32 views.
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
    fps = num_frames / duration
    num_crops = recipe.num_crops if profile == "accurate" else 1

    every_window = recipe.sampling == Sampling.SLIDING and profile == "accurate"
    if windows or every_window:
        slots, spans = sample_windows(num_frames, recipe, fps)
        if len(slots) > limits.max_windows:
            raise LimitExceeded("windows", len(slots), limits.max_windows, "windows")
    else:
        slots, spans = _sample_clips(num_frames, recipe, fps, profile)
    snap_s: float | None = None
    uniform_fast = profile == "fast" and not windows and recipe.sampling == Sampling.UNIFORM
    if uniform_fast and len(keyframes_s):
        span = (recipe.clip_len - 1) * recipe.frame_interval + 1
        start = snap_start(keyframes_s, slot_s, int(slots[0, 0]), num_frames - span)
        if start is not None and start != slots[0, 0]:
            snap_s = (start - int(slots[0, 0])) * slot_s
            slots = slots - slots[0, 0] + start
            spans = np.array([[start, start + span]], dtype=np.float64)

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
    prescaled, frame_size = frame_geometry(info.display_size, recipe)
    return ViewPlan(
        clips=clips,
        crops=crop_boxes(frame_size, recipe.crop_size, num_crops, recipe.crop_rule),
        frame_size=frame_size,
        rotation=info.rotation,
        num_frames=num_frames,
        duration_s=duration,
        prescaled_size=prescaled,
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


# --------------------------------------------------------------------------- temporal


def _sample_clips(
    num_frames: int, recipe: Recipe, fps: float, profile: Profile
) -> tuple[np.ndarray, np.ndarray]:
    """Slots (clips, clip_len) and [start, end) frame spans of the protocol's clips."""
    num_clips = recipe.num_clips if profile == "accurate" else 1
    whole = np.array([[0, num_frames]] * num_clips, dtype=np.float64)
    if recipe.sampling == Sampling.SEGMENTS:
        return sample_segments(num_frames, recipe.clip_len, num_clips), whole
    if recipe.sampling == Sampling.SLOWFAST_SEGMENTS:
        return sample_slowfast_segments(num_frames, recipe.clip_len)[None], whole[:1]
    if recipe.sampling == Sampling.SLOWFAST:
        span = slowfast_span(recipe, fps)
        slots, starts = sample_slowfast(
            num_frames, recipe.clip_len, span, num_clips, centre=profile == "fast"
        )
        return slots, np.stack([starts, np.minimum(starts + span, num_frames)], axis=1)
    if recipe.sampling == Sampling.SLIDING:  # the fast profile: one window, centred
        length = recipe.clip_len * recipe.frame_interval
        start = max(num_frames - length, 0) // 2
        row = _window_slots(recipe, start, num_frames, length, loop=True)
        return row[None], np.array([[start, min(start + length, num_frames)]], np.float64)
    slots = sample_uniform(num_frames, recipe.clip_len, recipe.frame_interval, num_clips)
    span = (recipe.clip_len - 1) * recipe.frame_interval + 1
    spans = np.stack([slots[:, 0], np.minimum(slots[:, 0] + span, num_frames)], axis=1)
    spans[slots[:, 0] + span > num_frames] = (0, num_frames)  # looped: the whole video
    return slots, spans.astype(np.float64)


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


def slowfast_span(recipe: Recipe, fps: float) -> float:
    """Source frames one PySlowFast clip spans: `max(1, tau × T / target_fps × fps)`."""
    assert recipe.target_fps is not None
    return max(1.0, recipe.frame_interval * recipe.clip_len / recipe.target_fps * fps)


def sample_slowfast(
    num_frames: int, clip_len: int, span: float, num_clips: int, *, centre: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(num_clips, clip_len) slots and the clips' first (fractional) frames.

    Clip i starts at `delta × i / num_clips` (`get_start_end_idx`); `centre` puts one clip at
    `delta / 2` instead. Frames past either end repeat the end frame (`torch.clamp`).
    """
    delta = max(num_frames - span, 0.0)
    if centre:
        starts = np.array([delta / 2])
    else:
        starts = np.array([delta * i / num_clips for i in range(num_clips)])
    slots = np.stack([_linspace_slots(start, span, clip_len, num_frames) for start in starts])
    return slots, starts


def sample_slowfast_segments(num_frames: int, clip_len: int) -> np.ndarray:
    """(clip_len,) slots: the middle of each of `clip_len` segments of `(n - 1) / clip_len`."""
    segment = float(num_frames - 1) / clip_len
    starts = np.round(segment * np.arange(clip_len)).astype(np.int64)
    ends = np.round(segment * np.arange(1, clip_len + 1)).astype(np.int64)
    return (starts + ends) // 2


def torch_linspace(start: float, end: float, steps: int) -> np.ndarray:
    """`torch.linspace(start, end, steps)` in float32, value for value, without torch.

    torch's CPU kernel casts both ends to float32, steps by `(end - start) / (steps - 1)`, counts
    the first half up from `start` and the second half down from `end`, and its vectorised loop
    rounds each `start + step × i` once (a fused multiply-add): float64 arithmetic, then one
    rounding to float32, gives the same values.
    """
    first, last = np.float32(start), np.float32(end)
    if steps == 1:
        return np.array([first], dtype=np.float32)
    step = np.float32((last - first) / np.float32(steps - 1))
    index = np.arange(steps)
    up = np.float64(first) + np.float64(step) * index
    down = np.float64(last) - np.float64(step) * (steps - 1 - index)
    return np.where(index < steps // 2, up, down).astype(np.float32)


def _linspace_slots(start: float, span: float, clip_len: int, num_frames: int) -> np.ndarray:
    """PySlowFast `temporal_sampling`: linspace over the span, clamped, truncated."""
    values = torch_linspace(start, start + span - 1, clip_len)
    return np.clip(values, np.float32(0), np.float32(num_frames - 1)).astype(np.int64)


def sample_windows(num_frames: int, recipe: Recipe, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Slots (num_windows, clip_len) and [start, end) frame spans of back-to-back windows.

    A window is `clip_len × frame_interval` frames (a PySlowFast clip's span for `slowfast`),
    sampled inside like one of the recipe's clips: consecutive or strided frames (`uniform`,
    `sliding`), the middle of each sub-segment (`segments`, `slowfast_segments`), or the
    linspace (`slowfast`). The tail shorter than a window follows `recipe.window_tail`. A video
    shorter than one window gives one window over all of it, out-of-range slots looping
    (clamped for `slowfast`).
    """
    if recipe.sampling == Sampling.SLOWFAST:
        length: float = slowfast_span(recipe, fps)
    else:
        length = recipe.clip_len * recipe.frame_interval
    starts = _window_starts(num_frames, length, recipe.window_tail)
    loop = recipe.window_tail in (WindowTail.LOOP, WindowTail.LOOP_UNLESS_ONE)
    slots = np.stack(
        [_window_slots(recipe, start, num_frames, length, loop=loop) for start in starts]
    )
    spans = np.stack([starts, np.minimum(starts + length, num_frames)], axis=1)
    return slots, spans


def _window_starts(num_frames: int, length: float, tail: WindowTail) -> np.ndarray:
    """First frames of the windows: every `length` frames, then the tail's window if any."""
    full = math.floor(num_frames / length + 1e-9)
    starts = [k * length for k in range(max(full, 1))]
    rest = num_frames - full * length
    if full and rest > 1e-6:
        if tail == WindowTail.END:
            starts.append(num_frames - length)
        elif tail == WindowTail.LOOP or (tail == WindowTail.LOOP_UNLESS_ONE and rest >= 2):
            starts.append(full * length)
    return np.array(starts, dtype=np.float64)


def _window_slots(
    recipe: Recipe, start: float, num_frames: int, length: float, *, loop: bool
) -> np.ndarray:
    """One window's slots, sampled like a clip of the recipe's sampler."""
    if recipe.sampling == Sampling.SLOWFAST:
        return _linspace_slots(start, length, recipe.clip_len, num_frames)
    interval = recipe.frame_interval
    steps = np.arange(recipe.clip_len) * interval
    if recipe.sampling in (Sampling.SEGMENTS, Sampling.SLOWFAST_SEGMENTS):
        steps = (steps + interval / 2.0).astype(np.int64)
    row = int(start) + steps
    if loop:  # LoopPadding: the frames the window has, repeated in order
        inside = row[row < num_frames]
        return inside[np.arange(len(row)) % len(inside)]
    return np.mod(row, num_frames)


# --------------------------------------------------------------------------- spatial


def frame_geometry(
    display_size: tuple[int, int], recipe: Recipe
) -> tuple[tuple[int, int] | None, tuple[int, int]]:
    """(pre-scaled size or None, resized size) of a displayed frame, both (height, width)."""
    height, width = display_size
    prescaled = None
    if recipe.prescale is not None:
        prescaled = height, width = prescale_size(height, width, recipe.prescale)
    if recipe.stretch_to is not None:
        return prescaled, recipe.stretch_to
    return prescaled, resize_short_side(height, width, recipe.short_side, recipe.size_rounding)


def prescale_size(height: int, width: int, prescale: PreScale) -> tuple[int, int]:
    """The ffmpeg CLI's `scale=-1:S` (or `S:-1`): the other side `av_rescale`d, halves up."""
    if prescale.side == "height" or width > height:
        return prescale.size, (prescale.size * width + height // 2) // height
    return (prescale.size * height + width // 2) // width, prescale.size


def resize_short_side(
    height: int, width: int, short_side: int, rounding: SizeRounding = SizeRounding.MMCV
) -> tuple[int, int]:
    """(height, width) with the short side at `short_side`, aspect kept, long side rounded as
    the reference rounds it. A frame whose short side is already there keeps its size (every
    reference returns it untouched)."""
    short, long = min(height, width), max(height, width)
    if short == short_side:
        return height, width
    if rounding == SizeRounding.MMCV:  # mmcv rescale_size: _scale_size on both sides
        scale = short_side / short
        return int(height * scale + 0.5), int(width * scale + 0.5)
    if rounding == SizeRounding.NEAREST:  # C round(double(long * S) / short)
        new_long = (2 * long * short_side + short) // (2 * short)
    elif rounding == SizeRounding.FLOOR:  # math.floor((float(long) / short) * size)
        new_long = math.floor((float(long) / short) * short_side)
    else:  # int(size * long / short)
        new_long = int(short_side * long / short)
    return (short_side, new_long) if height <= width else (new_long, short_side)


def crop_boxes(
    frame_size: tuple[int, int],
    crop_size: int,
    num_crops: int,
    rule: CropRule = CropRule.FLOOR,
) -> tuple[CropBox, ...]:
    """The centre crop, or three crops spread along the long side and centred across it.

    Three crops run near, centre, far along the width when the frame is at least as wide as
    tall, else along the height (mmaction2 `ThreeCrop`, PySlowFast `uniform_crop`).
    """
    height, width = frame_size
    top, left = _centre(height, crop_size, rule), _centre(width, crop_size, rule)
    if num_crops == 1:
        return (CropBox(top, left, crop_size),)
    if width >= height:
        return tuple(CropBox(top, x, crop_size) for x in _spread(width, crop_size, rule))
    return tuple(CropBox(y, left, crop_size) for y in _spread(height, crop_size, rule))


def _centre(length: int, crop: int, rule: CropRule) -> int:
    if rule == CropRule.CEIL:
        return math.ceil((length - crop) / 2)
    if rule == CropRule.ROUND:
        return round((length - crop) / 2.0)  # Python 3: halves to even, as torchvision
    return (length - crop) // 2


def _spread(length: int, crop: int, rule: CropRule) -> tuple[int, int, int]:
    if rule == CropRule.CEIL:
        return 0, math.ceil((length - crop) / 2), length - crop
    step = (length - crop) // 2
    return 0, step, 2 * step
