"""From a decoded frame to the pixels a view needs (in the decode worker).

Each sampled frame is converted once by a reused swscale context straight to the resized RGB
or BGR image (short side first, mmcv rounding), turned by its display rotation and cut to the
union of the plan's crops, so the worker sends each distinct frame once, as uint8, and no
larger than the views need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from model_store.spec import ChannelOrder
from service.video.sampling import CropBox, ViewPlan

__all__ = ["FrameConverter", "InterpolationName"]

InterpolationName = Literal["area", "bilinear", "bicubic"]

_INTERPOLATIONS: dict[str, Interpolation] = {
    "area": Interpolation.AREA,
    "bilinear": Interpolation.BILINEAR,
    "bicubic": Interpolation.BICUBIC,
}


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
        self, plan: ViewPlan, channel_order: ChannelOrder, interpolation: InterpolationName
    ) -> None:
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
            threads=1,
        )
        array = scaled.to_ndarray()
        if self.quarter_turns:
            array = np.rot90(array, k=self.quarter_turns)
        box = self.box
        return np.ascontiguousarray(
            array[box.top : box.top + box.height, box.left : box.left + box.width]
        )
