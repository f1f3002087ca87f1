"""A succeeded job's windows into the search index (`ACTSERVE_INDEX_JOBS`): each window's
embedding (its crops' mean, as `POST /index` stores them), under the job's id as the video's,
with the job's input URI kept beside them; searchable once the job has succeeded.

    jobs.runner.on_finished.append(JobIndexer(queue, store, lambda: engine.window_index))
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import numpy as np

from model_store import ModelStore
from service.jobs.queue import Job, JobQueue, JobState
from service.jobs.results import window_rows
from service.jobs.serving import WindowPlan
from service.search import index_windows
from window_index import WindowIndex, Windows

logger = logging.getLogger("actserve.jobs")


class JobIndexer:
    """The finished-job hook that indexes a succeeded job's windows into `index_of()` (the
    engine's, which the search routes read). A failure is logged, never fails the job: its
    results stand on their own."""

    def __init__(
        self, queue: JobQueue, store: ModelStore, index_of: Callable[[], WindowIndex]
    ) -> None:
        self.queue = queue
        self.store = store
        self.index_of = index_of

    async def __call__(self, job: Job) -> None:
        if job.state != JobState.SUCCEEDED:
            return
        try:
            count = await asyncio.to_thread(self.index, job)
        except Exception:
            logger.exception("job %s: indexing its windows failed", job.id)
            return
        logger.info("job %s: %d windows indexed", job.id, count)

    def index(self, job: Job) -> int:
        """Store `job`'s windows under its id; their count."""
        plan = WindowPlan.from_json(job.plan or {})
        rows = [
            (window, vector)
            for c in self.queue.chunks(job.id)
            for window, _, vector in window_rows(c)
        ]
        windows = Windows.of_video(
            job.id,
            [plan.windows[window][0] for window, _ in rows],
            [plan.windows[window][1] for window, _ in rows],
            np.stack([vector for _, vector in rows]),
            uri=None if job.input_kind == "upload" else job.input_ref,
        )
        manifest = self.store.read_manifest(job.model, job.version)
        _, count = index_windows(
            self.index_of(), manifest, windows, video_id=job.id, profile=str(plan.profile)
        )
        return count
