"""Video intake: an uploaded file in, the model's (V, C, T, H, W) views out.

One module per job:

- `container`: the only place a file reaches FFmpeg (allow-lists, typed errors);
- `index`: header limits, then every packet's timestamp and keyframe, in one open;
- `sampling`: the plan (pure): which moments, which crops;
- `reader`: decode only the planned frames, seeking when a keyframe makes it pay;
- `pixels`: resize, convert, rotate and cut each frame once;
- `flow`: TV-L1 optical flow between sampled frames, quantised as flow nets read it;
- `job`: the worker's job (`sample_frames`) and the parent's (`assemble_views`);
- `pool`: worker processes with a timeout and a memory cap.

`DecodePool` runs the file-touching steps in worker processes; `decode_video` runs them all in
the calling process. This package imports numpy, PyAV, pebble and `model_store` only, so
workers start light (no torch, no backbones).
"""

from service.video.index import FrameIndex, VideoInfo, index_video, probe_video
from service.video.job import (
    DecodedVideo,
    DecodeOptions,
    SampledFrames,
    assemble_views,
    decode_video,
    plan_windows,
    sample_frames,
    sample_streams,
)
from service.video.limits import VideoLimits
from service.video.pool import DecodePool, DecodeSettings
from service.video.sampling import Clip, CropBox, ViewPlan, plan_views

__all__ = [
    "Clip",
    "CropBox",
    "DecodeOptions",
    "DecodePool",
    "DecodeSettings",
    "DecodedVideo",
    "FrameIndex",
    "SampledFrames",
    "VideoInfo",
    "VideoLimits",
    "ViewPlan",
    "assemble_views",
    "decode_video",
    "index_video",
    "plan_views",
    "plan_windows",
    "probe_video",
    "sample_frames",
    "sample_streams",
]
