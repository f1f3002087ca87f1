"""The one adapter between live streams and the serving core (`service.engine.Engine`): which
model version a stream's windows go to, running them through that version's batcher (with
every request's views), the metrics registry, and the service's lifespan. Nothing else in
`service.streams` touches the engine, loaded models or the app's state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import numpy as np
from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry

from model_store import Modality, Recipe
from service.engine import Engine
from service.errors import BadRequest
from service.jobs.settings import JobSettings
from service.scores import softmax
from service.streams.settings import StreamSettings


@dataclass(frozen=True)
class Target:
    """The model version a stream's windows run on, as the stream sees it."""

    key: str  # model@version
    model: str
    recipe: Recipe
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Scored:
    key: str
    probabilities: np.ndarray  # (K,)


class Serving:
    """What streams need from the serving core."""

    def __init__(self, engine: Engine, settings: StreamSettings, jobs: JobSettings) -> None:
        self._engine = engine
        self.settings = settings
        #: Stream definitions persist in the jobs database (ACTSERVE_JOBS_DATABASE_URL).
        self.jobs = jobs

    @property
    def registry(self) -> CollectorRegistry:
        return self._engine.metrics.registry

    def target(self, model: str | None, version: int | None, alias: str | None) -> Target:
        """The version a stream with these selectors runs on now (the service's 4xx errors for
        an unknown one; 400 for a model streams cannot run)."""
        loaded = self._engine.resolve(model, version, alias)
        recipe = loaded.manifest.spec.recipe
        if len(loaded.streams) != 1 or recipe.modality != Modality.RGB or recipe.in_channels != 3:
            raise BadRequest(f"{loaded.key}: live streams run RGB models only (this one uses flow)")
        return Target(loaded.key, loaded.manifest.name, recipe, tuple(loaded.manifest.spec.labels))

    async def score(
        self,
        model: str | None,
        version: int | None,
        alias: str | None,
        view: np.ndarray,
        *,
        deadline: float,
    ) -> Scored:
        """One window (1, C, T, H, W) through the version's batcher (batched with every other
        stream's and request's views); its class probabilities."""
        loaded = self._engine.resolve(model, version, alias)
        with loaded.lease():
            outputs = await self._engine.run_tensors(loaded, view, deadline=deadline)
        return Scored(loaded.key, softmax(outputs.logits)[0])


@asynccontextmanager
async def streams_running(app: FastAPI) -> AsyncIterator[None]:
    """Inside the service's lifespan, once models are loaded: restore the persisted streams,
    and stop them all on the way out (before the models close)."""
    from service.streams.manager import StreamManager

    engine: Engine = app.state.engine
    manager = StreamManager(Serving(engine, engine.settings.streams, engine.settings.jobs))
    app.state.streams = manager
    await manager.start()
    try:
        yield
    finally:
        await manager.close()


def get_manager(request: Request):  # -> StreamManager (imported lazily above)
    return request.app.state.streams
