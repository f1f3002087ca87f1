"""The `streams` group of the service's settings (`ACTSERVE_STREAMS_*`)."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_settings import NoDecode

from service.video.limits import split_commas

#: URL schemes a stream may use.
STREAM_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "srt", "http", "https", "udp", "tcp"})


class StreamSettings(BaseModel):
    """Live streams: which URLs, how many, how patiently they are (re)opened."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Flat names (`ACTSERVE_<NAME>`) that differ from the field's.
    flat_names: ClassVar[dict[str, str]] = {
        "allowed": "streams_allowed",
        "max_streams": "streams_max",
        "connect_timeout_s": "streams_connect_timeout_s",
        "read_timeout_s": "streams_read_timeout_s",
        "reconnect_min_s": "streams_reconnect_min_s",
        "reconnect_max_s": "streams_reconnect_max_s",
        "frame_queue": "streams_frame_queue",
        "max_lag_s": "streams_max_lag_s",
    }

    allowed: Annotated[list[str], NoDecode, BeforeValidator(split_commas)] = Field(
        default_factory=list,
        description="Stream URL allow-list, comma-separated: URL globs (rtsp://cam-*.lan/*) and "
        "networks (10.0.0.0/8). With globs a URL must match one; a host resolving to a "
        "loopback, private, link-local or metadata address needs its network listed.",
    )
    max_streams: int = Field(16, ge=0, le=1024, description="Live streams this process runs.")
    connect_timeout_s: float = Field(
        10.0, gt=0, le=300, description="Longest wait to open a stream's URL."
    )
    read_timeout_s: float = Field(
        10.0, gt=0, le=300, description="Longest silence of an open stream before it reconnects."
    )
    reconnect_min_s: float = Field(
        0.5, gt=0, le=60, description="First wait before reconnecting (doubles, with jitter)."
    )
    reconnect_max_s: float = Field(
        30.0, gt=0, le=3600, description="Longest wait between reconnection attempts."
    )
    frame_queue: int = Field(
        64,
        ge=4,
        le=4096,
        description="Sampled frames a stream's reader may have in flight to the service; a "
        "reader ahead of it by more drops frames (counted).",
    )
    max_lag_s: float = Field(
        3.0,
        gt=0,
        le=600,
        description="A reader further behind the source's clock than this (decoding slower than "
        "real time) skips to the next keyframe; the frames skipped count as dropped.",
    )
