"""The service's own pipeline in this process, without HTTP: decode workers, one loaded model
version and its batcher, for the commands that run many videos (`actserve probe`, `actserve
batch`, a Ray worker).

    async with LocalPipeline(store, "demo-actions", workers=2) as local:
        classified = await local.classify(path, ClassifyOptions(profile="fast"))
        classified.outputs.embedding          # (V, D), as POST /classify computes it

Every video goes through `service.pipeline.classify`, the function the routes call: the same
limits, sampling, decode workers, batching and runtime as the service, so a batch result or a
probe's embeddings equal what the service answers for the same file.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from model_store import Manifest, ModelStore
from model_store.store import parse_model_ref
from service.loaded_models import LoadedModel, LoadedModels
from service.metrics import ServiceMetrics
from service.pipeline import Classified, ClassifyOptions, classify
from service.settings import Settings
from service.video import DecodePool

#: Files a folder of videos is read for (by suffix, case-insensitive).
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"})


def is_video_file(path: Path) -> bool:
    hidden = path.name.startswith(".")
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES and not hidden


def default_workers() -> int:
    """Decode workers that keep every core busy (the runtime takes its share in between)."""
    return max(1, os.cpu_count() or 1)


class LocalPipeline:
    """One model version of a store, served to this process; an async context manager.

    `model` is NAME, NAME@VERSION or NAME@ALIAS. Without `settings`, the service's are read
    (`ACTSERVE_*` variables apply) with `store`, `workers` decode workers (default: one per
    core) and any `overrides` (flat setting names, e.g. `max_queue_views`).
    """

    def __init__(
        self,
        store: Path,
        model: str,
        *,
        workers: int | None = None,
        settings: Settings | None = None,
        **overrides: Any,
    ) -> None:
        values = {"store": store, "decode_workers": workers or default_workers(), **overrides}
        self.settings = settings or Settings(**values)
        self.workers = self.settings.decode.workers
        self.store = ModelStore(self.settings.store)
        name, version, alias = parse_model_ref(model)
        self.manifest: Manifest = self.store.resolve(name, version=version, alias=alias)
        self._models: LoadedModels | None = None
        self._pool: DecodePool | None = None
        self._loaded: LoadedModel | None = None

    @property
    def loaded(self) -> LoadedModel:
        if self._loaded is None:
            raise RuntimeError("use `async with LocalPipeline(...)` first")
        return self._loaded

    async def __aenter__(self) -> LocalPipeline:
        settings = self.settings
        self._pool = DecodePool(settings.decode, settings.video)
        self._models = LoadedModels(
            self.store,
            ServiceMetrics(),
            runtime=settings.runtime,
            batching=settings.batching,
            drain_timeout_s=settings.drain_timeout_s,
            upstream=lambda: self._pool.backlog if self._pool else 0,
        )
        try:
            await self._pool.start()
            self._loaded = await self._models.load(self.manifest.name, self.manifest.version)
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._models is not None:
            await self._models.close()
        if self._pool is not None:
            await self._pool.close()
        self._loaded = None

    async def classify(self, path: str | os.PathLike[str], options: ClassifyOptions) -> Classified:
        """One video through the pipeline, within the service's request deadline."""
        loaded = self.loaded
        assert self._pool is not None
        deadline = asyncio.get_running_loop().time() + self.settings.request_timeout_s
        with loaded.lease():
            return await classify(loaded, self._pool, path, options, deadline=deadline)
