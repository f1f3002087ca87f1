"""Request and response models of the /jobs routes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model_store import Profile
from service.schemas import (
    ClipPrediction,
    Embedding,
    LabelScore,
    Segment,
    Shot,
    VideoMetadata,
    WindowEmbedding,
)

Feature = Literal["labels", "segments", "shots", "windows", "embeddings"]
State = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobInput(BaseModel):
    """Where the video is. Uploads come as multipart; `upload` here names a job's own upload
    (a resubmit), and resolvers for other schemes (object stores) plug in by `kind`."""

    model_config = ConfigDict(extra="forbid")

    uri: str = Field(description="The video's address, e.g. `upload:<job id>`.")


class JobRequest(BaseModel):
    """A job's JSON body (a multipart upload takes the same fields as query parameters)."""

    model_config = ConfigDict(extra="forbid")

    input: JobInput | None = None
    input_uri: str | None = Field(
        None,
        max_length=2000,
        description="The video by URI: `s3://`, `gs://`, `az://`, `https://` (allowed by "
        "ACTSERVE_JOBS_ALLOWED_INPUTS), or `file:///` (under ACTSERVE_JOBS_INPUT_DIRS).",
    )
    output_uri: str | None = Field(
        None,
        max_length=2000,
        description="An object-store prefix to write `results.json` under once the job "
        "succeeds (allowed by ACTSERVE_JOBS_ALLOWED_OUTPUTS).",
    )
    output_parquet: bool = Field(
        False, description="Also write `windows.parquet` there: a row per window."
    )
    webhook: str | None = Field(
        None,
        max_length=2000,
        description="A URL POSTed the job's status, signed (Standard Webhooks), once it "
        "succeeds, fails or is cancelled.",
    )
    model: str | None = None
    version: int | None = Field(None, ge=1)
    alias: str | None = None
    profile: Profile | None = None
    features: list[Feature] = Field(default_factory=lambda: ["labels", "segments"])
    top_k: int = Field(5, ge=1)
    segment_score: float = Field(0.5, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _one_input(self) -> JobRequest:
        if (self.input is None) == (self.input_uri is None):
            raise ValueError("name the video once: `input_uri` (or `input.uri`)")
        return self

    @property
    def uri(self) -> str:
        return self.input_uri if self.input_uri is not None else self.input.uri  # type: ignore[union-attr]


class WebhookAttempt(BaseModel):
    number: int
    at: datetime
    duration_s: float
    status_code: int | None = Field(description="The receiver's answer (null: none came).")
    error: str | None = Field(description="Why no answer came, or why it was not sent.")


class WebhookStatus(BaseModel):
    url: str = Field(description="The webhook's URL (any password hidden).")
    message_id: str = Field(description="The `webhook-id` header, the same on every attempt.")
    state: Literal["pending", "delivered", "failed"]
    attempts: list[WebhookAttempt]


class JobProgress(BaseModel):
    windows_done: int = Field(description="Windows classified so far.")
    windows_total: int | None = Field(description="Windows in the video (null until planned).")
    fraction: float = Field(description="windows_done / windows_total (0 until planned).")
    eta_s: float | None = Field(
        None, description="Seconds left at this run's pace (null until a chunk has finished)."
    )


class JobError(BaseModel):
    """The error the sync API would answer, with its HTTP status."""

    error: str = Field(examples=["corrupt_video"])
    status: int = Field(examples=[422])
    message: str


class JobStatus(BaseModel):
    id: str
    state: State
    model: str
    version: int
    features: list[Feature]
    progress: JobProgress
    attempts: int = Field(description="Times a process took the job (a crash adds one).")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: JobError | None = None
    results: str | None = Field(None, description="Where the results are, once it succeeded.")
    input_uri: str | None = Field(None, description="The video's URI, for a job given one.")
    output_uri: str | None = Field(None, description="Where the results are written too.")
    webhook: WebhookStatus | None = Field(
        None, description="The webhook's delivery and its attempts (GET /jobs/{id} only)."
    )


class JobList(BaseModel):
    jobs: list[JobStatus]
    total: int = Field(description="Jobs matching the filter.")
    offset: int
    limit: int
    next_offset: int | None


class ResultsPage(BaseModel):
    offset: int = Field(description="First window on this page.")
    limit: int
    windows: int = Field(description="Windows in the whole video.")
    next_offset: int | None = Field(description="The next page's offset; null on the last.")


class JobResults(BaseModel):
    """The sync answer's fields (/classify with per_clip and segments, /embed with
    per_window), the windows a page at a time."""

    job_id: str
    model: str
    version: int
    profile: Profile
    features: list[Feature]
    top_k: list[LabelScore] | None = Field(None, description="With the `labels` feature.")
    embedding: Embedding | None = Field(None, description="With `embeddings`: the mean.")
    segments: list[Segment] | None = Field(None, description="With the `segments` feature.")
    shots: list[Shot] | None = Field(
        None, description="With `shots`: the shots and their top-k (segments then shot-aware)."
    )
    clips: list[ClipPrediction] | None = Field(
        None, description="With `windows`: this page's windows and their top-k."
    )
    windows: list[WindowEmbedding] | None = Field(
        None, description="With `embeddings`: this page's windows' embeddings."
    )
    video: VideoMetadata
    page: ResultsPage


def timestamp(seconds: float | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None
