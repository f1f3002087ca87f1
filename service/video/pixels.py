"""From a decoded frame to the pixels a view needs (in the decode worker).

Each sampled frame is converted once by a reused swscale context straight to the resized RGB
or BGR image (short side first, mmcv rounding), turned by its display rotation and cut to the
union of the plan's crops, so the worker sends each distinct frame once, as uint8, and no
larger than the views need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from model_store.spec import ChannelOrder
from service.video.sampling import CropBox, ViewPlan

__all__ = ["FrameConverter", "InterpolationName", "PlannedOnFirstFrame"]

InterpolationName = Literal["area", "bilinear", "bicubic"]

_INTERPOLATIONS: dict[str, Interpolation] = {
    "area": Interpolation.AREA,
    "bilinear": Interpolation.BILINEAR,
    "bicubic": Interpolation.BICUBIC,
}


#: Frames at least this large are converted with the decoder's threads.
_THREADED_PIXELS = 1280 * 720


@dataclass(frozen=True)
class _Box:
    top: int
    left: int
    height: int
    width: int

    @classmethod
    def around(cls, crops: tuple[CropBox, ...]) -> _Box:
        top = min(c.top for c in crops)
        left = min(c.left for c in crops)
        bottom = max(c.top + c.size for c in crops)
        right = max(c.left + c.size for c in crops)
        return cls(top, left, bottom - top, right - left)


class FrameConverter:
    """One reused swscale context: resize + colour conversion, then rotate and cut.

    `crops` are the plan's crops relative to the cut-out (the union of the crops), which is
    what `__call__` returns: (H, W, 3) uint8 in the recipe's channel order.
    """

    def __init__(
        self,
        plan: ViewPlan,
        channel_order: ChannelOrder,
        interpolation: InterpolationName,
        threads: int = 1,
    ) -> None:
        self.plan = plan
        # The decoder's thread count for large frames (a 1080p AREA resize costs ~4 ms on one
        # thread); small ones convert faster on one than threads take to start.
        self.threads = threads
        height, width = plan.frame_size
        self.quarter_turns = plan.rotation // 90
        # The scaler works on the coded frame, so a quarter-turned video swaps its target sides.
        self.width, self.height = (height, width) if self.quarter_turns % 2 else (width, height)
        self.box = box = _Box.around(plan.crops)
        self.crops = tuple(CropBox(c.top - box.top, c.left - box.left, c.size) for c in plan.crops)
        self.format = "bgr24" if channel_order == ChannelOrder.BGR else "rgb24"
        self.interpolation = _INTERPOLATIONS[interpolation]
        self.reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        scaled = self.reformatter.reformat(
            frame,
            width=self.width,
            height=self.height,
            format=self.format,
            interpolation=self.interpolation,
            src_color_range=frame.color_range or None,
            threads=self.threads if frame.width * frame.height >= _THREADED_PIXELS else 1,
        )
        array = scaled.to_ndarray()
        if self.quarter_turns:
            array = np.rot90(array, k=self.quarter_turns)
        box = self.box
        return np.ascontiguousarray(
            array[box.top : box.top + box.height, box.left : box.left + box.width]
        )


class PlannedOnFirstFrame:
    """A `FrameConverter` whose plan is made from the first frame it converts.

    The display rotation sits in side data that PyAV 18 only exposes on decoded frames, and
    the spatial plan (resized size, crops) depends on it; the moments to sample do not. So
    the job plans the moments first, reads, and makes the spatial plan from the first wanted
    frame, rather than decoding an extra frame up front (a single-threaded decode of a
    keyframe: ~55 ms at 1080p).
    """

    def __init__(
        self,
        plan_for: Callable[[av.VideoFrame], ViewPlan],
        channel_order: ChannelOrder,
        interpolation: InterpolationName,
        threads: int = 1,
    ) -> None:
        self._plan_for = plan_for
        self._channel_order = channel_order
        self._interpolation = interpolation
        self._threads = threads
        self.converter: FrameConverter | None = None

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        if self.converter is None:
            plan = self._plan_for(frame)
            self.converter = FrameConverter(
                plan, self._channel_order, self._interpolation, self._threads
            )
        return self.converter(frame)
