"""What /streams takes and returns, and the events it emits (the client parses these too)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator


class EventRule(BaseModel):
    """When an action counts as happening: hysteresis over window probabilities."""

    model_config = ConfigDict(extra="forbid")

    high: float = Field(
        0.6,
        gt=0,
        le=1,
        description="An action starts once its probability "
        "is at least this for `windows` windows in a row.",
    )
    low: float = Field(
        0.4, ge=0, le=1, description="A started action ends at its first window below this."
    )
    windows: int = Field(2, ge=1, le=100, description="Consecutive windows at or above `high`.")
    labels: list[str] | None = Field(
        None, description="Only these labels raise events (default: every label)."
    )

    @model_validator(mode="after")
    def _ordered(self) -> EventRule:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self


class StreamCreate(BaseModel):
    """A stream to run: where it is, which model, how it is windowed, when it raises events."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=4096,
        description="rtsp://, rtmp://, srt://, http(s):// (HLS or MPEG-TS), udp:// or tcp://.",
    )
    name: str | None = Field(None, max_length=200, description="A name of your choosing.")
    model: str | None = Field(None, description="Model name (default: the default model).")
    version: int | None = Field(None, ge=1, description="Pin a version.")
    alias: str | None = Field(None, description="Follow an alias (e.g. stable).")
    window_s: float | None = Field(
        None,
        gt=0,
        le=60,
        description="Seconds one window spans; its clip_len frames are spread evenly over it "
        "(default: the recipe's span, clip_len × frame_interval frames at the stream's rate).",
    )
    stride_s: float = Field(0.5, gt=0, le=60, description="Seconds between window ends.")
    events: EventRule = Field(default_factory=EventRule)
    webhook_url: str | None = Field(
        None, max_length=4096, description="Where events are POSTed, signed (Standard Webhooks)."
    )

    @model_validator(mode="after")
    def _one_selector(self) -> StreamCreate:
        if self.version is not None and self.alias is not None:
            raise ValueError("give a version or an alias, not both")
        return self


class StreamState(StrEnum):
    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"


class StreamStats(BaseModel):
    input_fps: float = Field(description="Frames per second the source delivers (recent).")
    sample_fps: float | None = Field(description="Frames per second the windows sample.")
    lag_s: float | None = Field(
        description="How late the newest window's result came, after its last frame arrived "
        "in real time (seconds)."
    )
    windows_per_s: float = Field(description="Windows classified per second (recent).")
    windows: int
    dropped_windows: int = Field(description="Windows skipped because the model was busy.")
    dropped_frames: int = Field(description="Sampled frames the reader dropped (service behind).")
    reconnects: int
    events: int
    frame_size: tuple[int, int] | None = Field(description="(height, width) of the source.")
    codec: str | None


class StreamPublic(BaseModel):
    id: str
    name: str | None
    url: str = Field(description="The URL, any password replaced by ***.")
    model: str
    version: int | None
    alias: str | None
    serving: str | None = Field(description="model@version the last window ran on.")
    window_s: float | None
    stride_s: float
    events: EventRule
    webhook_url: str | None
    created_at: datetime
    state: StreamState
    last_error: str | None
    last_error_at: datetime | None
    stats: StreamStats


class StreamsPublic(BaseModel):
    streams: list[StreamPublic]


class EventType(StrEnum):
    START = "start"
    END = "end"


class StreamEvent(BaseModel):
    """An action starting or ending on a stream (one SSE `data:` line, one webhook body)."""

    id: str = Field(description="Unique per event; an action's start and end share `action_id`.")
    action_id: str
    type: EventType
    stream: str
    label: str
    score: float = Field(description="start: the window's probability; end: the peak.")
    peak_score: float
    start_stream_s: float = Field(description="Stream time the action started (s).")
    end_stream_s: float | None = None
    start_time: datetime = Field(description="Wall-clock time the action started.")
    end_time: datetime | None = None
    emitted_at: datetime
    reason: str | None = Field(None, description="end: 'below_low', 'disconnected', 'stopped'.")
