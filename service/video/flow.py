"""TV-L1 optical flow as flow models read it: x and y displacement quantised to grey levels.

The public flow networks (P3D's TV-L1 stream, the TSN/I3D flow nets) were trained on flow
images written by the extraction tools of their time, so the service computes flow the same
way (pure functions of uint8 frames; numpy and OpenCV, no torch):

1. grey frames: OpenCV's `cvtColor(..., *2GRAY)` (BT.601 luma), as both tools do;
2. TV-L1 between each pair with OpenCV's `DualTVL1OpticalFlow` at its default parameters,
   the CPU solver of mmaction2's `tools/misc/flow_extraction.py` (and the CPU twin of the CUDA
   solver yjxiong/dense_flow runs); the field is (H, W, 2) float32 pixels, x then y;
3. quantised as dense_flow's `convertFlowToImage` does: clip to ±bound, map linearly to
   0..255 and round to the nearest level, so zero motion is 127.5 → 128 and the flow
   nets' mean 128 centres it. (mmaction2's `flow_to_img` truncates instead of rounding:
   at most one level lower.) Bound 20 px is both tools' default.

A flow stack is what one time step of a flow view holds: the x and y images of
`frames_per_stack` consecutive flow fields, interleaved on the channel axis (x1, y1, x2, y2,
...; mmaction2's `NCHW_Flow` order). 3-D flow nets (P3D, I3D) read one field per step
(2 channels); TSN-style 2-D nets stack several. TV-L1 is costly (about 0.2-0.3 s per
160×160 pair on one CPU core, `benchmarks/flow.py`), so callers compute each distinct pair
once.

OpenCV's contrib build (`opencv-contrib-python-headless`, the `flow` extra) is imported on
first use: the service runs RGB models without it, and `require_opencv` says what to install
when a flow model is served without it.
"""

from __future__ import annotations

from functools import lru_cache
from types import ModuleType

import numpy as np

from model_store.spec import ChannelOrder

__all__ = [
    "DEFAULT_FLOW_BOUND",
    "OPENCV_HINT",
    "flow_available",
    "flow_pairs",
    "flow_stack",
    "quantise_flow",
    "require_opencv",
    "solve_pairs",
    "to_grey",
    "tvl1_flow",
]

#: dense_flow's and mmaction2's default clip of the flow, in pixels per frame.
DEFAULT_FLOW_BOUND = 20.0

OPENCV_HINT = (
    "optical flow needs OpenCV's contrib modules (cv2.optflow): "
    "pip install 'actserve[flow]' (opencv-contrib-python-headless)"
)


@lru_cache(maxsize=1)
def require_opencv() -> ModuleType:
    """OpenCV with its contrib `optflow` module, or ImportError saying what to install.

    A plain `opencv-python(-headless)` also provides `cv2` but not `cv2.optflow`.
    """
    try:
        import cv2
    except ImportError as exc:
        raise ImportError(f"{OPENCV_HINT}; cv2 cannot be imported ({exc})") from None
    if not hasattr(cv2, "optflow"):
        raise ImportError(f"{OPENCV_HINT}; the installed cv2 {cv2.__version__} lacks optflow")
    return cv2


def flow_available() -> bool:
    """Whether `require_opencv` succeeds (for checks that must not raise)."""
    try:
        require_opencv()
    except ImportError:
        return False
    return True


def to_grey(frames: np.ndarray, channel_order: ChannelOrder | str = ChannelOrder.RGB) -> np.ndarray:
    """(..., H, W, 3) uint8 colour frames in `channel_order` → (..., H, W) uint8 luma.

    Grey frames (..., H, W) with no channel axis pass through unchanged.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    if frames.ndim >= 3 and frames.shape[-1] == 3:
        cv2 = require_opencv()
        code = cv2.COLOR_BGR2GRAY if channel_order == ChannelOrder.BGR else cv2.COLOR_RGB2GRAY
        flat = frames.reshape(-1, *frames.shape[-3:])
        grey = np.stack([cv2.cvtColor(np.ascontiguousarray(f), code) for f in flat])
        return grey.reshape(frames.shape[:-1])
    if frames.ndim < 2:
        raise ValueError(f"frames must be (..., H, W) or (..., H, W, 3), got {frames.shape}")
    return frames


def tvl1_flow(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """TV-L1 flow from grey `first` to grey `second`: (H, W, 2) float32, x then y, pixels.

    A point at (x, y) in `first` is at (x + flow[y, x, 0], y + flow[y, x, 1]) in `second`.
    """
    if first.shape != second.shape or first.ndim != 2:
        raise ValueError(
            f"two grey (H, W) frames of one size needed, got {first.shape}, {second.shape}"
        )
    cv2 = require_opencv()
    solver = cv2.optflow.DualTVL1OpticalFlow_create()
    return solver.calc(np.ascontiguousarray(first), np.ascontiguousarray(second), None)


def quantise_flow(flow: np.ndarray, bound: float = DEFAULT_FLOW_BOUND) -> np.ndarray:
    """(H, W, 2) float flow → (2, H, W) uint8 grey levels: round(255 (f + b) / 2b), clipped.

    dense_flow's mapping: -bound → 0, 0 → 128 (127.5 rounded half to even), +bound → 255.
    """
    if bound <= 0:
        raise ValueError(f"bound must be positive, got {bound}")
    clipped = np.clip(np.moveaxis(np.asarray(flow, dtype=np.float64), -1, 0), -bound, bound)
    return np.rint((clipped + bound) * (255.0 / (2.0 * bound))).astype(np.uint8)


def flow_pairs(positions: np.ndarray, num_frames: int, frames_per_stack: int = 1) -> np.ndarray:
    """The frame pairs whose flow each time step reads: (..., T × k, 2) frame positions.

    `positions` (..., T) are the frames the clip samples (k = frames_per_stack); step t reads
    the fields from frame p_t + j to p_t + j + 1 for j < k, as flow models trained on
    extracted flow images read image p_t + j (the field from that frame to the next). A field
    that would start on or past the last frame is the video's last field.
    """
    if num_frames < 2:
        raise ValueError(f"optical flow needs at least two frames; the video has {num_frames}")
    starts = np.asarray(positions)[..., :, None] + np.arange(frames_per_stack)
    starts = np.clip(starts, 0, num_frames - 2).reshape(*starts.shape[:-2], -1)
    return np.stack([starts, starts + 1], axis=-1)


def solve_pairs(
    grey: np.ndarray, pairs: np.ndarray, bound: float = DEFAULT_FLOW_BOUND
) -> tuple[np.ndarray, np.ndarray]:
    """Quantised flow of each distinct pair once: (fields (U, 2, H, W) uint8, which field
    each pair is, shaped like `pairs` without its last axis). `pairs` index `grey` (N, H, W)."""
    pairs = np.asarray(pairs, dtype=np.int64)
    distinct, which = np.unique(pairs.reshape(-1, 2), axis=0, return_inverse=True)
    height, width = grey.shape[1:]
    fields = np.empty((len(distinct), 2, height, width), dtype=np.uint8)
    for n, (a, b) in enumerate(distinct.tolist()):
        fields[n] = quantise_flow(tvl1_flow(grey[a], grey[b]), bound)
    return fields, which.reshape(pairs.shape[:-1])


def flow_stack(
    frames: np.ndarray,
    *,
    frames_per_stack: int = 1,
    bound: float = DEFAULT_FLOW_BOUND,
    channel_order: ChannelOrder | str = ChannelOrder.RGB,
) -> np.ndarray:
    """The flow stacks of consecutive frames: uint8 (2 × frames_per_stack, T, H, W).

    `frames` is (T × k + 1, H, W[, 3]) uint8 (k = frames_per_stack), step t reading the
    fields between frames t·k, t·k + 1, ..., t·k + k, x and y interleaved on channels.
    """
    if frames_per_stack < 1:
        raise ValueError(f"frames_per_stack must be at least 1, got {frames_per_stack}")
    grey = to_grey(frames, channel_order)
    if grey.ndim != 3:
        raise ValueError(f"frames must be (N, H, W[, 3]), got {np.shape(frames)}")
    fields_count = len(grey) - 1
    if fields_count < 1 or fields_count % frames_per_stack:
        raise ValueError(
            f"{len(grey)} frames do not make whole stacks of {frames_per_stack} fields: "
            f"a flow clip needs T × {frames_per_stack} + 1 frames, at least two"
        )
    pairs = np.stack([np.arange(fields_count), np.arange(1, fields_count + 1)], axis=-1)
    fields, which = solve_pairs(grey, pairs, bound)
    steps = fields_count // frames_per_stack
    stacked = fields[which].reshape(steps, frames_per_stack, 2, *grey.shape[1:])
    return np.ascontiguousarray(stacked.reshape(steps, -1, *grey.shape[1:]).transpose(1, 0, 2, 3))
