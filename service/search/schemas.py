"""The request and response bodies of /index and /search."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from service.schemas import Timings


class MomentOut(BaseModel):
    video_id: str = Field(examples=["cam1/2026-12-01.mp4"])
    start_s: float = Field(description="Start of the moment's first window, seconds.")
    end_s: float = Field(description="End of its last window, seconds.")
    score: float = Field(
        description="Its best window's score: the cosine similarity to the query, or, for a "
        "class search, the class's probability."
    )
    windows: int = Field(description="Adjacent windows merged into the moment.")
    label: str | None = Field(None, description="The class (class searches only).")


class SearchTimings(BaseModel):
    embed: Timings | None = Field(None, description="Decoding and embedding the query clip.")
    search_ms: float = Field(description="Searching or scoring the index.")
    total_ms: float


class SearchResponse(BaseModel):
    request_id: str
    query: Literal["clip", "window", "classes"] = Field(
        description="What was searched for: an uploaded clip, a stored window, or a probe "
        "version's classes."
    )
    model: str
    version: int
    index: str = Field(
        description="The index searched: the model version whose embeddings it holds (a "
        "probe version searches its base's).",
        examples=["demo-actions@1"],
    )
    window: tuple[float, float] | None = Field(
        None, description="For a window query: the stored window's start and end seconds."
    )
    labels: list[str] | None = Field(None, description="For a class search: the classes.")
    threshold: float | None = Field(None, description="For a class search: the threshold.")
    windows_scored: int | None = Field(
        None, description="For a class search: the stored windows its head scored."
    )
    moments: list[MomentOut]
    timings: SearchTimings


class IndexResponse(BaseModel):
    request_id: str
    video_id: str
    model: str
    version: int
    index: str = Field(description="The index written: the model version of the embeddings.")
    windows: int = Field(description="Windows stored for the video (its earlier ones replaced).")
    duration_s: float | None
    timings: Timings


class IndexedVersion(BaseModel):
    model: str
    version: int
    windows: int
    videos: int


class IndexListing(BaseModel):
    dir: str = Field(description="Where the index lives (ACTSERVE_INDEX_DIR).")
    indexes: list[IndexedVersion]


class Removed(BaseModel):
    model: str
    version: int
    windows: int


class DeleteResponse(BaseModel):
    video_id: str | None = None
    removed: list[Removed]
