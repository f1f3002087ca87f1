"""From a decoded frame to the pixels a view needs (in the decode worker).

Each sampled frame is converted once and sent once, cut to the union of the plan's crops and
already turned by its display rotation. How it is resized is the recipe's, each option
implemented here once:

- `area` (the fast path): one reused swscale context converts and resizes straight from the
  decoded YUV frame, with SWS_AREA, as the torchvision video reader does;
- `cv2_linear`, `pil_bilinear`, `torch_bilinear`: swscale converts the frame to RGB at its own
  size (PyAV's `to_ndarray(format="rgb24")`, what the research loaders received), then the
  reference's own image library resizes it: OpenCV `INTER_LINEAR` on uint8 (mmcv, Caffe),
  Pillow `BILINEAR` (torchvision on PIL images), or torch's bilinear interpolation on floats,
  re-implemented in numpy (workers never import torch) and computed for the crops' pixels only;
  its frames stay float32 (4x the bytes of uint8): rounding them would move views by up to
  half a level;
- a `prescale` first scales with swscale's bicubic filter, as the ffmpeg CLI that extracted
  3D-ResNets' frames did.

Frames are always converted to RGB: BGR recipes get the channels reversed here, because
swscale's scaled packed-BGR output is not the RGB output reversed (on flat colours it mixes
levels up to 5 apart, most visibly on full-range MJPEG).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from model_store.spec import ChannelOrder, Recipe, ResizeFilter
from service.video.sampling import CropBox, ViewPlan

__all__ = ["FrameConverter", "torch_bilinear"]


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

    def cut(self, array: np.ndarray) -> np.ndarray:
        return array[self.top : self.top + self.height, self.left : self.left + self.width]


#: Frames at least this large are converted with the decoder's threads.
_THREADED_PIXELS = 1280 * 720

#: An image resize after the swscale step: (H, W, 3) uint8 RGB, target (height, width) and the
#: box wanted from the result -> the box's pixels.
Resize = Callable[[np.ndarray, tuple[int, int], _Box], np.ndarray]


class FrameConverter:
    """Frames in, the union of the plan's crops out, resized as the recipe says.

    `crops` are the plan's crops relative to the cut-out (the union of the crops), which is
    what `__call__` returns: (H, W, 3) in the recipe's channel order, uint8 (float32 for
    `torch_bilinear`, on the same 0..255 scale).
    """

    def __init__(self, plan: ViewPlan, recipe: Recipe, threads: int = 1) -> None:
        self.plan = plan
        # The decoder's thread count for large frames (a 1080p AREA resize costs ~4 ms on one
        # thread); small ones convert faster on one than threads take to start.
        self.threads = threads
        self.quarter_turns = plan.rotation // 90
        self.frame_size = plan.frame_size
        self.box = box = _Box.around(plan.crops)
        self.crops = tuple(CropBox(c.top - box.top, c.left - box.left, c.size) for c in plan.crops)
        self.reverse = recipe.channel_order == ChannelOrder.BGR
        self.reformatter = VideoReformatter()
        # swscale's step: the whole resize (area), the pre-scale, or the conversion alone.
        self.resize: Resize | None = None
        self.interpolation: Interpolation | None = None
        self.scaled_size: tuple[int, int] | None = None  # (height, width), displayed
        if recipe.resize_filter == ResizeFilter.AREA:
            self.interpolation, self.scaled_size = Interpolation.AREA, plan.frame_size
        else:
            self.resize = _RESIZES[recipe.resize_filter]()
            if plan.prescaled_size is not None:
                self.interpolation = Interpolation.BICUBIC
                self.scaled_size = plan.prescaled_size

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        width = height = None
        if self.scaled_size is not None:
            # The scaler works on the coded frame, so a quarter-turned video swaps its sides.
            height, width = self.scaled_size
            if self.quarter_turns % 2:
                height, width = width, height
        array = self.reformatter.reformat(
            frame,
            width=width,
            height=height,
            format="rgb24",
            interpolation=self.interpolation,
            src_color_range=frame.color_range or None,
            threads=self.threads if frame.width * frame.height >= _THREADED_PIXELS else 1,
        ).to_ndarray()
        if self.quarter_turns:
            array = np.rot90(array, k=self.quarter_turns)
        if self.resize is not None and array.shape[:2] != self.frame_size:
            array = self.resize(array, self.frame_size, self.box)
        else:
            array = self.box.cut(array)
        if self.reverse:
            array = array[..., ::-1]
        return np.ascontiguousarray(array)


def _cv2_linear() -> Resize:
    # Imported by the workers whose recipe needs it: OpenCV maps about 400 MB of address space.
    import cv2

    cv2.setNumThreads(1)  # one decode job per worker process; bit-exact either way

    def resize(array: np.ndarray, size: tuple[int, int], box: _Box) -> np.ndarray:
        height, width = size
        return box.cut(cv2.resize(array, (width, height), interpolation=cv2.INTER_LINEAR))

    return resize


def _pil_bilinear() -> Resize:
    from PIL import Image  # only in the workers whose recipe needs it

    def resize(array: np.ndarray, size: tuple[int, int], box: _Box) -> np.ndarray:
        height, width = size
        image = Image.fromarray(np.ascontiguousarray(array)).resize(
            (width, height), Image.Resampling.BILINEAR
        )
        return box.cut(np.asarray(image))

    return resize


def _torch_bilinear() -> Resize:
    def resize(array: np.ndarray, size: tuple[int, int], box: _Box) -> np.ndarray:
        rows = np.arange(box.top, box.top + box.height)
        columns = np.arange(box.left, box.left + box.width)
        return torch_bilinear(array, size, rows, columns)

    return resize


_RESIZES: dict[ResizeFilter, Callable[[], Resize]] = {
    ResizeFilter.CV2_LINEAR: _cv2_linear,
    ResizeFilter.PIL_BILINEAR: _pil_bilinear,
    ResizeFilter.TORCH_BILINEAR: _torch_bilinear,
}


def torch_bilinear(
    image: np.ndarray, size: tuple[int, int], rows: np.ndarray, columns: np.ndarray
) -> np.ndarray:
    """Rows × columns of `interpolate(image, size, mode="bilinear", align_corners=False)`.

    `image` is (H, W, C); the result is float32 (len(rows), len(columns), C). The source
    coordinates and weights are torch's CPU kernel's (float32 scale `in / out`, source
    `scale × (dst + 0.5) - 0.5` clamped at 0, the last pixel repeated at the far edge); the
    values agree with torch's within float32 rounding (≈ 3e-5 of a level on 0..255).
    """
    height, width = size
    top, top_weights = _bilinear_axis(image.shape[0], height, rows)
    left, left_weights = _bilinear_axis(image.shape[1], width, columns)
    # Across first, on each source row the output needs once, then down.
    needed, where = np.unique(np.concatenate(top), return_inverse=True)
    source = image[needed]
    across = source[:, left[0]].astype(np.float32) * left_weights[0][:, None]
    across += source[:, left[1]].astype(np.float32) * left_weights[1][:, None]
    near, far = where[: len(rows)], where[len(rows) :]
    down = across[near] * top_weights[0][:, None, None]
    down += across[far] * top_weights[1][:, None, None]
    return down


def _bilinear_axis(
    in_size: int, out_size: int, positions: np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(near, far) source indices and their float32 weights for output `positions`."""
    scale = np.float32(in_size) / np.float32(out_size)
    source = (np.float64(scale) * (positions + 0.5) - 0.5).astype(np.float32)
    source = np.maximum(source, np.float32(0))
    near = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
    weight = np.clip(source - near.astype(np.float32), 0, 1).astype(np.float32)
    far = near + (near < in_size - 1)
    return (near, far), (np.float32(1) - weight, weight)
