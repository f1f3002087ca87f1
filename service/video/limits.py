"""What an uploaded video may be before the service spends time decoding it.

`VideoLimits` is also the `video` group of the service's settings (`service/settings.py`):
every field is set as `ACTSERVE_<FIELD>`, except the two allow-lists, which are
`ACTSERVE_VIDEO_CONTAINERS` and `ACTSERVE_VIDEO_CODECS`.
"""

from __future__ import annotations

import json
from typing import Annotated, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_settings import NoDecode

#: FFmpeg demuxer names. `mov` also opens mp4/m4a/3gp, `matroska` also webm; each name in a
#: demuxer's comma list matches. AVI stays in because UCF101 and HMDB51 are AVI files.
DEFAULT_CONTAINERS = ("mov", "mp4", "matroska", "webm", "avi")
#: FFmpeg codec ids (`Codec.canonical_name`), whatever decoder implements them.
DEFAULT_CODECS = ("h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "mjpeg")


def split_commas(value: object) -> object:
    """Lists arrive from the environment as comma-separated text (or a JSON list)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


#: Names set as a sequence, or as text such as "mov, matroska" from the environment.
NameList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(split_commas)]


class VideoLimits(BaseModel):
    """Limits checked from the header before any frame is decoded, and again while decoding.

    Every breach raises `LimitExceeded(limit, value, maximum)` with `limit` set to the field's
    short name (`bytes`, `duration`, `pixels`, `frames`, `streams`, `aspect_ratio`, `windows`,
    `view_bytes`).
    The allow-lists refuse with `ContainerNotAllowed` and `UnsupportedCodec`: FFmpeg opens over
    400 formats and decodes over 500 codecs, some with a history of memory-safety bugs.

        limits = VideoLimits(max_duration_s=120, containers=("mov", "matroska"))
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The `ACTSERVE_*` names (lower case, no prefix) that differ from the field's name.
    flat_names: ClassVar[dict[str, str]] = {
        "containers": "video_containers",
        "codecs": "video_codecs",
    }

    max_upload_bytes: int = Field(
        200 * 2**20, ge=1, description="Size of the uploaded file (413 while uploading)."
    )
    max_duration_s: float = Field(600.0, gt=0, description="Duration from the header or packets.")
    max_pixels: int = Field(
        3840 * 2160, ge=1, description="Width × height of one frame (header and every frame)."
    )
    max_frames: int = Field(
        18_000, ge=1, description="Frames in the video (header estimate, then packet count)."
    )
    max_streams: int = Field(16, ge=1, description="Streams of any kind in the container.")
    max_aspect_ratio: float = Field(
        8.0, ge=1.0, description="Long side / short side; a 16×4000 video would resize to 64k px."
    )
    max_windows: int = Field(
        4096,
        ge=1,
        description="Windows of a whole-video request: `per_clip` (streamed a chunk at a time; "
        "10 minutes of back-to-back 16-frame windows at 30 fps take 1,125), or a sliding-window "
        "protocol (3D-ResNets' `accurate`).",
    )
    max_view_bytes: int = Field(
        512 * 2**20, ge=1, description="float32 bytes of one request's views (V×C×T×H×W×4)."
    )
    max_decode_pixels: int = Field(
        10_000_000_000,
        ge=1,
        description="Frames a request's plan makes the decoder decode (keyframe distances "
        "counted) × pixels per frame; checked before decoding. 10 Gpx ≈ 4,800 1080p frames, "
        "about 20 s of one decode worker.",
    )
    max_corrupt_packets: int = Field(
        16, ge=0, description="Packets that fail to decode before the file counts as corrupt."
    )
    containers: NameList = Field(
        DEFAULT_CONTAINERS, min_length=1, description="FFmpeg demuxers allowed."
    )
    codecs: NameList = Field(DEFAULT_CODECS, min_length=1, description="Video codecs allowed.")
