"""The service's engine in this process, without HTTP, serving one model version: for the
commands that run many videos (`actserve probe`, `actserve batch`, a Ray worker).

    async with LocalPipeline(store, "demo-actions", workers=2) as local:
        run = await local.classify(path, RunOptions(profile="fast"))
        run.outputs.embedding          # (V, D), as POST /classify computes it

Every video goes through `Engine.run_videos`, what the routes call: the same limits,
sampling, decode workers, batching, runtime and metrics as the service, so a batch result or
a probe's embeddings equal what the service answers for the same file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from model_store import Manifest, ModelStore
from model_store.store import parse_model_ref
from service.engine import Engine, RunOptions, VideoRun
from service.loaded_models import LoadedModel
from service.settings import Settings

#: Files a folder of videos is read for (by suffix, case-insensitive).
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"})


def is_video_file(path: Path) -> bool:
    hidden = path.name.startswith(".")
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES and not hidden


def default_workers() -> int:
    """Decode workers that keep every core busy (the runtime takes its share in between)."""
    return max(1, os.cpu_count() or 1)


class LocalPipeline:
    """One model version of a store, served to this process by an `Engine`; an async context
    manager.

    `model` is NAME, NAME@VERSION or NAME@ALIAS. Without `settings`, the service's are read
    (`ACTSERVE_*` variables apply) with `store`, `workers` decode workers (default: one per
    core) and any `overrides` (setting names, e.g. `max_queue_views`).
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
        # Resolved now: a model the store does not have fails before any worker starts.
        name, version, alias = parse_model_ref(model)
        store_ = ModelStore(self.settings.store)
        self.manifest: Manifest = store_.resolve(name, version=version, alias=alias)
        self.engine: Engine | None = None
        self._loaded: LoadedModel | None = None

    @property
    def loaded(self) -> LoadedModel:
        if self._loaded is None:
            raise RuntimeError("use `async with LocalPipeline(...)` first")
        return self._loaded

    async def __aenter__(self) -> LocalPipeline:
        self.engine = Engine(self.settings)
        ref = f"{self.manifest.name}@{self.manifest.version}"
        await self.engine.start([ref])
        self._loaded = self.engine.resolve(self.manifest.name, self.manifest.version)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.engine is not None:
            await self.engine.close()
        self._loaded = None

    async def classify(self, path: str | os.PathLike[str], options: RunOptions) -> VideoRun:
        """One video through the engine, within the service's request deadline."""
        loaded, engine = self.loaded, self.engine
        assert engine is not None
        with loaded.lease():
            (run,) = await engine.run_videos(loaded, [path], options, deadline=engine.deadline())
        return run
