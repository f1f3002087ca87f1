"""`Jobs`: the queue, the inputs, the runner and the retention sweep of one process, started
and stopped with the app (or `actserve worker`).

    jobs = Jobs(settings.jobs, serving)
    await jobs.start(run=True)       # lifespan, after the models are served
    jobs.runner.on_finished.append(notify)   # run once a job has finished (jobs.webhooks)
    await jobs.close()               # stops taking work; running jobs go back to the queue
"""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy.exc import SQLAlchemyError

from service.jobs.indexing import JobIndexer
from service.jobs.inputs import InputResolvers
from service.jobs.metrics import JobMetrics
from service.jobs.notify import JobWebhooks
from service.jobs.queue import Job, JobQueue
from service.jobs.remote import RemoteFiles
from service.jobs.runner import JobRunner
from service.jobs.serving import Serving
from service.jobs.settings import JobSettings

logger = logging.getLogger("actserve.jobs")

#: An upload file with no job row is left alone this long (its submit may be under way).
ORPHAN_GRACE_S = 3600.0


def describe(job: Job) -> dict:
    """A job's status as GET /jobs/{id} answers it (a webhook's `data`)."""
    from service.jobs.routes import status_of  # the routes import this module

    return status_of(job).model_dump(mode="json", exclude={"webhook"})


class Jobs:
    def __init__(self, settings: JobSettings, serving: Serving, queue: JobQueue) -> None:
        self.settings = settings
        self.serving = serving
        self.queue = queue
        self.directory = settings.directory()
        self.inputs = InputResolvers(self.directory, settings.input_dirs)
        self.metrics = JobMetrics(serving.registry, queue)
        self.runner = JobRunner(queue, serving, self.inputs, settings, self.metrics)
        self.remote = RemoteFiles(settings, self.directory)
        self.remote.register(self.inputs)
        self.runner.outputs = self.remote
        self.webhooks = JobWebhooks(queue, settings, describe)
        self.runner.on_finished.append(self.webhooks.finished)
        engine = serving.engine
        if engine.settings.search.jobs:
            indexer = JobIndexer(queue, serving.models.store, lambda: engine.window_index)
            self.runner.on_finished.append(indexer)
        self._sweeper: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, settings: JobSettings, serving: Serving) -> Jobs:
        """Connect to the jobs database (creating its tables) and set up; nothing runs yet."""
        settings.directory().mkdir(parents=True, exist_ok=True)
        queue = await asyncio.to_thread(
            JobQueue, settings.url(), lease_s=settings.lease_s, max_attempts=settings.max_attempts
        )
        return cls(settings, serving, queue)

    @classmethod
    async def open_for_server(cls, settings: JobSettings, serving: Serving) -> Jobs | str:
        """`open`, or, when nothing was configured (no ACTSERVE_JOBS_DIR or database URL)
        and the default place is not writable (a container's read-only root), the reason
        jobs are off: the server then serves everything else and answers /jobs with 503.
        A configured place that fails is an error: the server does not start."""
        try:
            return await cls.open(settings, serving)
        except (OSError, SQLAlchemyError) as error:
            if settings.dir is not None or settings.database_url is not None:
                raise
            reason = (
                f"the default jobs directory {settings.directory()} is not usable ({error}); "
                "set ACTSERVE_JOBS_DIR (and ACTSERVE_JOBS_DATABASE_URL to share a queue)"
            )
            logger.warning("jobs are off: %s", reason)
            return reason

    async def start(self, *, run: bool) -> None:
        """Sweep retention now and then; with `run`, take and run queued jobs too."""
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="actserve-jobs-retention")
        await self.webhooks.resume()
        if run:
            self.runner.start()

    async def close(self) -> None:
        await self.runner.stop()
        await self.webhooks.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        await asyncio.to_thread(self.queue.close)

    async def _sweep_forever(self) -> None:
        interval = min(60.0, self.settings.retention_s / 10)
        while True:
            try:
                await asyncio.to_thread(self.sweep)
            except Exception:
                logger.exception("the jobs retention sweep failed; trying again later")
            await asyncio.sleep(interval)

    def sweep(self, now: float | None = None) -> int:
        """Remove what the jobs no longer need; returns the jobs deleted.

        - finished jobs past their retention: their records, results and input;
        - the uploads of finished jobs (a process that died after the end left them);
        - upload files no job knows of, after `ORPHAN_GRACE_S` (a submit that died midway).
        """
        now = time.time() if now is None else now
        deleted = 0
        for job in self.queue.finished_before(now - self.settings.retention_s):
            self.inputs.discard(job)
            self.queue.delete(job.id)
            deleted += 1
        for job in self.queue.finished_with_input():
            self.inputs.discard(job)
            self.queue.input_removed(job.id)
        files = [p for p in self.inputs.uploads.iterdir() if p.is_file()]
        known = self.queue.known([p.name for p in files]) if files else set()
        for path in files:
            if path.name not in known and path.stat().st_mtime < now - ORPHAN_GRACE_S:
                path.unlink(missing_ok=True)
        return deleted
