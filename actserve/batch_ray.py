"""`actserve batch --ray`: the same job on a Ray cluster, for archives one machine cannot get
through in time.

The videos become a Ray Dataset of paths; `map_batches` runs them through a pool of actors,
each holding a `LocalPipeline` (decode workers, the model version, its batcher) on an event
loop of its own and running `batch.run_batch`, the function a local run uses, so a record is
the same whichever way it was made. Records stream back to the driver, which writes them to
the output as they arrive (so a Ray run resumes like a local one). Every node needs actserve
installed and the store at the same path (a shared filesystem), and reads the videos there.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from actserve.batch import BatchOptions, run_batch
from actserve.local import LocalPipeline

T = TypeVar("T")


class PipelineActor:
    """A Ray Data actor: one model version served to its process, fed batches of paths."""

    def __init__(self, store: str, model: str, workers: int, options: BatchOptions) -> None:
        self.options = options
        self.workers = workers
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.local = LocalPipeline(Path(store), model, workers=workers, max_queue_views=100_000)
        self._run(self.local.__aenter__())

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[str]]:
        rows: list[dict] = []
        paths = [str(p) for p in batch["path"]]
        work = run_batch(
            self.local.classify, paths, self.options, rows.append, concurrency=2 * self.workers
        )
        self._run(work)
        # JSON text: nested records (top-k lists) cross Ray's Arrow blocks unchanged.
        return {"record": [json.dumps(row) for row in rows]}

    def __del__(self) -> None:
        if self.loop.is_running():
            self._run(self.local.__aexit__())
            self.loop.call_soon_threadsafe(self.loop.stop)


def run_on_ray(
    paths: list[str],
    *,
    store: Path,
    model: str,
    options: BatchOptions,
    write: Callable[[dict], None],
    address: str | None = None,
    cpus_per_actor: int = 2,
) -> None:
    """Run `paths` on the Ray cluster at `address` (None: the one `ray.init()` finds or
    starts; a cluster already connected in this process is used as it is), one actor per
    `cpus_per_actor` CPUs of the cluster, and `write` each record."""
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=address, include_dashboard=False, log_to_driver=False, logging_level="WARNING"
        )
    try:
        _run(paths, store, model, options, write, cpus_per_actor)
    finally:
        if started_here:
            ray.shutdown()


def _run(
    paths: list[str],
    store: Path,
    model: str,
    options: BatchOptions,
    write: Callable[[dict], None],
    cpus_per_actor: int,
) -> None:
    import ray

    ray.data.DataContext.get_current().enable_progress_bars = False  # ours is on screen
    cpus = int(ray.cluster_resources().get("CPU", 1))
    actors = max(1, cpus // cpus_per_actor)
    dataset = ray.data.from_items([{"path": p} for p in paths])
    records = dataset.map_batches(
        PipelineActor,
        fn_constructor_kwargs={
            "store": str(store.resolve()),
            "model": model,
            "workers": cpus_per_actor,
            "options": options,
        },
        batch_size=2 * cpus_per_actor,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=min(cpus_per_actor, cpus),
    )
    for row in records.iter_rows():
        write(json.loads(row["record"]))
