"""Running jobs: claim one, plan its windows once, run its chunks in order (skipping those a
previous run stored), store each chunk as it finishes, and write the summary.

    claim ─► plan (stored) ─► chunk 0 ─► store ─► chunk 1 ─► store ─► … ─► summary ─► succeeded
      ▲          heartbeat every lease/3: lost lease or cancelled ─► stop at once
      └── after a crash: the lease lapses, a claim resumes at the first missing chunk

A chunk is the unit of resumption: its windows are decided when the job is planned, so a
chunk computed again after a crash is the chunk an uninterrupted run computes, and the
summary reads the stored chunks only. Cancelling the task stops the chunk's decode in its
worker (the pool cancels the job there).

Errors: the input's (a 4xx the sync API would answer: corrupt video, limits) fail the job
with that error; the service's (a worker crash twice, a deadline, a version not loaded
here) put it back in the queue, where `max_attempts` bounds the retries; a full model queue
is waited out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from service.errors import ModelNotLoaded, Overloaded, RequestError, code_for, status_for
from service.jobs.db import to_bytes
from service.jobs.inputs import InputResolvers
from service.jobs.metrics import JobMetrics
from service.jobs.queue import Chunk, Job, JobQueue, JobState
from service.jobs.remote import RemoteFiles
from service.jobs.results import summarize
from service.jobs.serving import Serving, WindowPlan
from service.jobs.settings import JobSettings
from service.video.shots import ShotRule

logger = logging.getLogger("actserve.jobs")

#: Called with the job once it has finished here (succeeded, failed or cancelled).
FinishedHook = Callable[[Job], Awaitable[None] | None]

#: Longest wait for a full model queue before the chunk is tried again.
MAX_BACKOFF_S = 5.0


class LeaseLost(Exception):
    """The job was cancelled, or another process holds it now."""


def error_body(error: BaseException) -> dict[str, Any]:
    """An error as the sync API's JSON body says it, with its status."""
    return {"error": code_for(error), "status": status_for(error), "message": str(error)}


class JobRunner:
    def __init__(
        self,
        queue: JobQueue,
        serving: Serving,
        inputs: InputResolvers,
        settings: JobSettings,
        metrics: JobMetrics,
        *,
        owner: str | None = None,
    ) -> None:
        self.queue = queue
        self.serving = serving
        self.inputs = inputs
        self.settings = settings
        self.metrics = metrics
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.on_finished: list[FinishedHook] = []
        #: Writes a succeeded job's results to its `output_uri` (service/jobs/remote.py).
        self.outputs: RemoteFiles | None = None
        self._running: dict[str, asyncio.Task[None]] = {}
        #: The runs still at their work (not yet winding down): only these may be stopped,
        #: so a stop never lands in the clean-up after the work (input removal, hooks).
        self._working: dict[str, asyncio.Task[None]] = {}
        self._why: dict[str, str] = {}
        self._stopping = False
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    @property
    def running(self) -> set[str]:
        return set(self._running)

    def start(self) -> None:
        self._stopping = False
        self._loop_task = asyncio.create_task(self._loop(), name="actserve-jobs-runner")

    def wake(self) -> None:
        """A job was submitted here: look for work now rather than at the next poll."""
        self._wake.set()

    def interrupt(self, job_id: str) -> bool:
        """Stop a job this process runs (it was cancelled); True if it ran here."""
        if job_id not in self._running:
            return False
        self._stop_work(job_id, "cancelled")
        return True

    def _stop_work(self, job_id: str, why: str) -> None:
        """Cancel a run's work, once, and only while it is at it: a run winding down (its
        work ended, or already stopped) removes its input and calls the hooks itself."""
        task = self._working.pop(job_id, None)
        if task is not None:
            self._why[job_id] = why
            task.cancel()

    async def stop(self) -> None:
        """Stop taking jobs; jobs running here go back to the queue at once (their chunks
        kept), for another process or the next start to resume."""
        self._stopping = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        for job_id in list(self._running):
            self._stop_work(job_id, "stopping")
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def run_until_idle(self) -> int:
        """Run queued jobs until none is left; how many ran (tests, `actserve worker --once`)."""
        ran = 0
        while (job := await asyncio.to_thread(self.queue.claim, self.owner)) is not None:
            await self._start(job)
            ran += 1
        return ran

    async def _loop(self) -> None:
        while True:
            job = None
            if len(self._running) < self.settings.concurrency:
                try:
                    job = await asyncio.to_thread(self.queue.claim, self.owner)
                except Exception:
                    logger.exception("claiming a job failed; trying again")
            if job is not None:
                task = asyncio.create_task(self._start(job), name=f"actserve-job-{job.id}")
                task.add_done_callback(lambda _: self._wake.set())
                continue
            self._wake.clear()
            try:
                async with asyncio.timeout(self.settings.poll_s):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _start(self, job: Job) -> None:
        task = asyncio.ensure_future(self._run(job))
        self._running[job.id] = task
        try:
            await asyncio.gather(task, return_exceptions=True)
        finally:
            self._running.pop(job.id, None)
            self._why.pop(job.id, None)

    async def _run(self, job: Job) -> None:
        """One run of `job`, until it finishes, is cancelled or stops here."""
        logger.info("job %s: taken by %s (attempt %d)", job.id, self.owner, job.attempts)
        if self._stopping:  # claimed as the runner stopped: back to the queue untouched
            await asyncio.to_thread(self.queue.release, job.id, self.owner, None)
            return
        work = asyncio.current_task()
        assert work is not None
        self._working[job.id] = work
        beat = asyncio.create_task(self._heartbeat(job.id))
        try:
            try:
                await self._execute(job)
            finally:
                self._working.pop(job.id, None)  # from here on, nothing stops this run
        except asyncio.CancelledError:
            why = self._why.get(job.id, "stopping")
            if why == "stopping":
                await asyncio.to_thread(self.queue.release, job.id, self.owner, None)
                logger.info("job %s: stopped here; back in the queue", job.id)
            else:
                logger.info("job %s: %s; its work here stopped", job.id, why)
        except LeaseLost:
            logger.info("job %s: cancelled or taken over; its work here stopped", job.id)
        except (ModelNotLoaded, RequestError) as error:
            if isinstance(error, ModelNotLoaded):
                await self._release(job, error)
            else:
                logger.info("job %s: failed: %s", job.id, error)
                await asyncio.to_thread(
                    self.queue.finish, job.id, self.owner, JobState.FAILED, error=error_body(error)
                )
        except Exception as error:
            await self._release(job, error)
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
        await self._after(job.id)

    async def _release(self, job: Job, error: BaseException) -> None:
        logger.warning("job %s: %s; back in the queue", job.id, error, exc_info=error)
        await asyncio.to_thread(self.queue.release, job.id, self.owner, error_body(error))

    async def _after(self, job_id: str) -> None:
        """Once a job has finished: its input removed, its metrics, the hooks."""
        job = await asyncio.to_thread(self.queue.get, job_id)
        if not job.state.finished:
            return
        await asyncio.to_thread(self.inputs.discard, job)
        await asyncio.to_thread(self.queue.input_removed, job.id)
        self.metrics.finished(job)
        for hook in self.on_finished:
            try:
                result = hook(job)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                logger.exception("job %s: a finished-job hook failed", job.id)

    async def _heartbeat(self, job_id: str) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_s / 3)
            try:
                held = await asyncio.to_thread(self.queue.heartbeat, job_id, self.owner)
            except Exception:
                logger.exception("job %s: heartbeat failed; trying again", job_id)
                continue
            if not held:
                self._stop_work(job_id, "cancelled or taken over")
                return

    async def _execute(self, job: Job) -> None:
        loaded = self.serving.resolve(job.model, job.version)
        path = await asyncio.to_thread(self.inputs.fetch, job)
        if job.plan is not None:
            plan = WindowPlan.from_json(job.plan)
        else:
            profile = self.serving.profile_of(loaded, job.request.get("profile"))
            plan = await self.serving.plan(loaded, path, profile, self.settings.chunk_views)
            stored = await asyncio.to_thread(
                self.queue.set_plan, job.id, self.owner, plan.as_json(), len(plan.windows)
            )
            if not stored:
                raise LeaseLost
        done = await asyncio.to_thread(self.queue.chunk_numbers, job.id)
        shots = ShotRule() if "shots" in job.request["features"] else None
        for number, (start, stop) in enumerate(plan.chunks):
            if number in done:
                continue
            began = time.perf_counter()
            outputs = await self._chunk(loaded, path, plan, number, shots)
            chunk = Chunk(
                number=number,
                start=start,
                stop=stop,
                logits=to_bytes(outputs.logits),
                embedding=to_bytes(outputs.embedding),
                view_window=to_bytes(outputs.view_window),
                frames_decoded=outputs.frames_decoded,
                warnings=outputs.warnings,
                video=outputs.video,
                shots=outputs.shots,
            )
            if not await asyncio.to_thread(self.queue.add_chunk, job.id, self.owner, chunk):
                raise LeaseLost
            seconds = sum(end - begin for begin, end in plan.windows[start:stop])
            self.metrics.chunk_done(stop - start, seconds, time.perf_counter() - began)
        spec = self.serving.spec(loaded)
        score = float(job.request.get("segment_score", 0.5))
        summary = await asyncio.to_thread(
            lambda: summarize(self.queue.chunks(job.id), plan, spec, score, shots)
        )
        if self.outputs is not None and job.request.get("output_uri"):
            chunks = self.queue.chunks(job.id)
            await asyncio.to_thread(self.outputs.write_results, job, plan, summary, chunks, spec)
        finished = await asyncio.to_thread(
            self.queue.finish, job.id, self.owner, JobState.SUCCEEDED, summary=summary
        )
        if not finished:
            raise LeaseLost
        logger.info("job %s: succeeded (%d windows)", job.id, len(plan.windows))

    async def _chunk(self, loaded, path, plan: WindowPlan, number: int, shots: ShotRule | None):
        while True:
            try:
                return await self.serving.run_chunk(loaded, path, plan, number, shots)
            except Overloaded as full:  # the model's queue: interactive requests first
                await asyncio.sleep(min(MAX_BACKOFF_S, float(full.retry_after)))
