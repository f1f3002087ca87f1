"""The one module where jobs touch the serving core: resolving a model version, probing and
planning a video in the decode workers, running a chunk of windows through the version's
batcher, and the score helpers the sync answers are built with.

Everything else in `service.jobs` talks to `Serving`, so when the serving core moves (an
`Engine` owning settings, metrics, decode pool, models and admission) only this module
follows it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from model_store import Modality, ModelSpec, Profile
from service.engine import Engine, RunOptions
from service.errors import BadRequest
from service.loaded_models import LoadedModel
from service.responses import segment_predictions, top_labels, video_metadata
from service.scores import softmax
from service.segments import SegmentRule
from service.video import (
    DecodeOptions,
    VideoInfo,
    assemble_views,
    plan_windows,
    probe_video,
)
from service.video.shots import ShotRule
from service.windows import chunk_bounds

if TYPE_CHECKING:
    from service.settings import Settings

__all__ = [
    "ChunkOutputs",
    "SegmentRule",
    "Serving",
    "WindowPlan",
    "segment_predictions",
    "serving_without_http",
    "softmax",
    "top_labels",
]

logger = logging.getLogger("actserve.jobs")

#: The decode pool's fairness key of job work (one client: jobs share their turns).
JOBS_CLIENT = "jobs"


@dataclass(frozen=True)
class WindowPlan:
    """A job's windows, fixed once: their times and the chunks they run in."""

    profile: Profile
    windows: list[tuple[float, float]]
    chunks: list[tuple[int, int]]

    def as_json(self) -> dict:
        return {
            "profile": str(self.profile),
            "windows": [list(w) for w in self.windows],
            "chunks": [list(c) for c in self.chunks],
        }

    @classmethod
    def from_json(cls, data: dict) -> WindowPlan:
        return cls(
            Profile(data["profile"]),
            [tuple(w) for w in data["windows"]],  # type: ignore[misc]
            [tuple(c) for c in data["chunks"]],  # type: ignore[misc]
        )


@dataclass(frozen=True)
class ChunkOutputs:
    """One chunk's views through the model: rows per view, the window of each view (counted
    over the whole video) and the video as the sync answers describe it."""

    logits: np.ndarray
    embedding: np.ndarray
    view_window: np.ndarray
    frames_decoded: int
    warnings: list[str]
    video: dict
    #: With a shot rule: the boundaries in the chunk's stretch, as `ShotBoundary` fields.
    shots: list[dict] | None = None


class Serving:
    """The serving core (`service.engine.Engine`) as jobs see it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.models = engine.models
        self.pool = engine.pool
        self.metrics = engine.metrics
        self.request_timeout_s = engine.settings.request_timeout_s

    @classmethod
    def of_engine(cls, engine: Engine) -> Serving:
        return cls(engine)

    @property
    def registry(self):
        return self.metrics.registry

    def resolve(
        self, model: str | None, version: int | None = None, alias: str | None = None
    ) -> LoadedModel:
        """The loaded version a job asks for; a version whose windows cannot stream chunk by
        chunk (two-stream, flow) is refused."""
        loaded = self.engine.resolve(model, version, alias)
        if len(loaded.streams) != 1 or loaded.streams[0].modality != Modality.RGB:
            raise BadRequest(
                f"{loaded.key} is a two-stream or flow model; jobs run one RGB network "
                "chunk by chunk (use /classify?per_clip=true for this model)"
            )
        return loaded

    @staticmethod
    def spec(loaded: LoadedModel) -> ModelSpec:
        return loaded.manifest.spec

    def spec_of(self, model: str, version: int) -> ModelSpec:
        """A version's spec (labels) from the store, loaded here or not."""
        return self.models.store.read_manifest(model, version).spec

    @staticmethod
    def profile_of(loaded: LoadedModel, profile: Profile | None) -> Profile:
        return RunOptions(profile=profile, per_clip=True).profile_of(loaded)

    async def probe(self, path: os.PathLike[str] | str) -> VideoInfo:
        """The header checks of an upload (duration, size, frames, codec) in a worker."""
        return await self.pool.run(probe_video, os.fspath(path), self.pool.limits)

    async def plan(
        self, loaded: LoadedModel, path: os.PathLike[str] | str, profile: Profile, chunk_views: int
    ) -> WindowPlan:
        recipe = loaded.manifest.spec.recipe
        options = DecodeOptions(profile=profile, windows=True)
        with loaded.lease():
            plan = await self._in_time(
                self.pool.run(
                    plan_windows,
                    os.fspath(path),
                    recipe,
                    options,
                    self.pool.limits,
                    client=JOBS_CLIENT,
                    background=True,
                )
            )
        bounds = chunk_bounds(plan, recipe, self.pool.limits.max_view_bytes, chunk_views)
        windows = [(clip.start_s, clip.end_s) for clip in plan.clips]
        return WindowPlan(profile, windows, bounds)

    async def run_chunk(
        self,
        loaded: LoadedModel,
        path: os.PathLike[str] | str,
        plan: WindowPlan,
        number: int,
        shots: ShotRule | None = None,
    ) -> ChunkOutputs:
        """Decode chunk `number`'s windows (in a worker, within the jobs' share, after any
        waiting request) and run them through the version's batcher; with `shots`, the shot
        boundaries of the chunk's stretch too (found in the same decode)."""
        start, stop = plan.chunks[number]
        recipe = loaded.manifest.spec.recipe
        options = DecodeOptions(profile=plan.profile, windows=True, shots=shots)
        with loaded.lease():
            (sampled,), _ = await self._in_time(
                self.pool.sample(
                    os.fspath(path),
                    (recipe,),
                    options,
                    (start, stop),
                    client=JOBS_CLIENT,
                    background=True,
                )
            )
            decoded = await asyncio.to_thread(assemble_views, sampled, recipe)
            deadline = asyncio.get_running_loop().time() + self.request_timeout_s
            outputs = await loaded.streams[0].batcher.submit(decoded.views, deadline=deadline)
        video = video_metadata(decoded).model_dump()
        return ChunkOutputs(
            logits=np.asarray(outputs.logits, dtype=np.float32),
            embedding=np.asarray(outputs.embedding, dtype=np.float32),
            view_window=np.asarray(decoded.view_clip, dtype=np.int32) + start,
            frames_decoded=decoded.frames_decoded,
            warnings=list(decoded.warnings),
            video=video,
            shots=None if decoded.shots is None else [asdict(b) for b in decoded.shots],
        )

    async def _in_time(self, work):
        from service.errors import DeadlineExceeded

        try:
            async with asyncio.timeout(self.request_timeout_s):
                return await work
        except TimeoutError:
            raise DeadlineExceeded(
                "a job's chunk took longer than ACTSERVE_REQUEST_TIMEOUT_S to decode"
            ) from None


@asynccontextmanager
async def serving_without_http(settings: Settings) -> AsyncIterator[Serving]:
    """The engine (decode workers, served models) without an HTTP server, for
    `actserve worker`."""
    started = time.perf_counter()
    async with Engine(settings) as engine:
        logger.info(
            "job worker serving %s (%.1f s to start)",
            ", ".join(m.key for m in engine.models.loaded()) or "nothing",
            time.perf_counter() - started,
        )
        yield Serving(engine)
