"""Causal sliding windows over a ring buffer of a stream's sampled frames.

The reader samples frames at the window's own rate (one every `window_s / clip_len` seconds of
stream time), so the buffer holds exactly the `clip_len` frames the newest window needs, and a
window is due whenever the newest frame lies `stride_s` past the last window's end. A gap in the
stream (a reconnection, frames dropped) empties the buffer: a window never spans a gap.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from model_store import Recipe
from service.streams.events import WindowTimes


@dataclass(frozen=True)
class Frame:
    """One sampled frame: stream time, arrival time (time.time()) and its crop (H, W, 3)."""

    time_s: float
    wall: float
    pixels: np.ndarray


@dataclass(frozen=True)
class Window:
    frames: tuple[Frame, ...]

    @property
    def times(self) -> WindowTimes:
        first, last = self.frames[0], self.frames[-1]
        return WindowTimes(first.time_s, last.time_s, first.wall, last.wall)


class RingBuffer:
    """The last `clip_len` sampled frames, and which windows they make."""

    def __init__(self, clip_len: int, stride_s: float) -> None:
        self.clip_len = clip_len
        self.stride_s = stride_s
        self.period_s: float | None = None
        self._frames: deque[Frame] = deque(maxlen=clip_len)
        self._last_end: float | None = None

    def reset(self, period_s: float | None = None) -> None:
        """Forget the frames (a new connection; `period_s`: its sampling period)."""
        self._frames.clear()
        self._last_end = None
        if period_s is not None:
            self.period_s = period_s

    def push(self, frame: Frame) -> Window | None:
        """Add a frame; the window it completes, if one is due."""
        if self._frames:
            step = frame.time_s - self._frames[-1].time_s
            if step <= 0 or (self.period_s is not None and step > 2.5 * self.period_s):
                self._frames.clear()  # time went back or jumped: a new stretch
                self._last_end = None
        self._frames.append(frame)
        if len(self._frames) < self.clip_len:
            return None
        # Half a period of slack: frames sit on the sampling grid, strides need not.
        slack = 0.5 * (self.period_s or 0.0)
        if self._last_end is not None and frame.time_s < self._last_end + self.stride_s - slack:
            return None
        self._last_end = frame.time_s
        return Window(tuple(self._frames))


class Normaliser:
    """Frames (T, H, W, 3) uint8 → one view (1, 3, T, H, W) float32, as the recipe says."""

    def __init__(self, recipe: Recipe) -> None:
        std = np.array(recipe.std, dtype=np.float64)
        self.scale = (recipe.pixel_scale / 255.0 / std).astype(np.float32)
        self.offset = (np.array(recipe.mean, dtype=np.float64) / std).astype(np.float32)

    def __call__(self, window: Window) -> np.ndarray:
        pixels = np.stack([f.pixels for f in window.frames])  # (T, H, W, C)
        view = pixels.transpose(3, 0, 1, 2).astype(np.float32)  # (C, T, H, W)
        view *= self.scale[:, None, None, None]
        view -= self.offset[:, None, None, None]
        return view[None]
