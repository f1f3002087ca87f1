"""Video intake: an uploaded file in, the model's (V, C, T, H, W) views out.

probe_video (header + limits) → plan_views (pure: which moments, which crops) →
sample_frames (decode only those frames, in a worker) → assemble_views (crop + normalise).
`DecodePool` runs the file-touching steps in worker processes with a timeout and a memory
cap; `decode_video` runs them all in the calling process. This package imports numpy, PyAV,
pebble and `model_store` only, so workers start light (no torch, no backbones).
"""

from service.video.decode import (
    DecodedVideo,
    DecodeOptions,
    FrameIndex,
    SampledFrames,
    assemble_views,
    decode_video,
    sample_frames,
)
from service.video.limits import VideoLimits
from service.video.pool import DecodePool
from service.video.probe import VideoInfo, probe_video
from service.video.sampling import Clip, CropBox, ViewPlan, plan_views

__all__ = [
    "Clip",
    "CropBox",
    "DecodeOptions",
    "DecodePool",
    "DecodedVideo",
    "FrameIndex",
    "SampledFrames",
    "VideoInfo",
    "VideoLimits",
    "ViewPlan",
    "assemble_views",
    "decode_video",
    "plan_views",
    "probe_video",
    "sample_frames",
]
