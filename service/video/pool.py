"""Decode worker processes: untrusted files never reach FFmpeg in the service's own process.

Each job (index + plan + decode, or a probe) runs in a worker process under a wall-clock
timeout and an address-space limit (RLIMIT_AS), so a crashing, hanging or memory-hungry
decode fails only its own request with a typed error and its worker is replaced. The pool is
pebble's `ProcessPool`: per-task timeouts that terminate the worker, a fresh worker after a
crash (and one more try of the job on it) and cancellation of running tasks (a dropped client
stops its decode). Workers live as long as they are healthy: a fresh one costs an interpreter
start and the imports (13% of all CPU samples under load when they were replaced every 100
jobs), and a worker's memory does not grow with the jobs it runs (86-90 MiB RSS over 400
mixed jobs, damaged files included); `jobs_per_worker` still recycles them for whoever wants
it. Workers are spawned, not forked: the parent may hold threads (uvicorn, inference
runtimes) that a fork would copy mid-lock. In front of the workers: a bounded backlog,
handed out fairly across clients.

    pool = DecodePool(DecodeSettings(workers=2, timeout_s=60), VideoLimits())
    await pool.start()                      # FastAPI lifespan, before `yield`
    (video,) = await pool.decode_streams(
        path, (spec.recipe,), DecodeOptions(profile="fast"), client="10.0.0.7"
    )
    video.views                             # (V, C, T, H, W) float32
    await pool.close()                      # after `yield`
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import multiprocessing
import os
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar, TypeVar

import pebble
from pydantic import BaseModel, ConfigDict, Field

from model_store.spec import Recipe
from service.errors import (
    DecodeFailed,
    DecodeOutOfMemory,
    DecodeTimeout,
    Overloaded,
    WorkerCrashed,
)
from service.logs import (
    LogSettings,
    active_settings,
    job_context,
    request_id_var,
    start_worker_logging,
)
from service.video.job import (
    DecodedVideo,
    DecodeOptions,
    SampledFrames,
    assemble_views,
    sample_streams,
)
from service.video.limits import VideoLimits
from service.video.slots import FairSlots

__all__ = ["DecodePool", "DecodeSettings"]

T = TypeVar("T")
logger = logging.getLogger("actserve.decode")
#: What the workers log, each record with the request's id.
worker_logger = logging.getLogger("actserve.decode.worker")

#: A durable job's chunk waits for interactive requests at most this long before it takes
#: the next freed worker (within the jobs' share): priority without starvation.
JOB_MAX_WAIT_S = 2.0

#: The worker's own memory limit, for the error message (set by `_start_worker`).
_memory_limit: int | None = None


class DecodeSettings(BaseModel):
    """The decode workers; the `decode` group of the service's settings.

    `timeout_s` counts from when a worker picks the job up, not from when it was queued;
    queueing policy (how many requests may wait) belongs to the caller. `memory_mb` caps each
    worker's address space (None: no cap); it must leave room for the interpreter, numpy and
    FFmpeg (about 270 MiB of address space before any frame).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The `ACTSERVE_*` names (lower case, no prefix) that differ from the field's name.
    flat_names: ClassVar[dict[str, str]] = {
        "workers": "decode_workers",
        "timeout_s": "decode_timeout_s",
        "memory_mb": "decode_memory_mb",
        "jobs_per_worker": "decode_jobs_per_worker",
        "max_pending": "max_pending_decodes",
        "max_wait_s": "max_decode_wait_s",
        "nice": "decode_nice",
        "job_share": "jobs_decode_share",
        "flow_field_s": "flow_field_seconds",
    }

    workers: int = Field(2, ge=1, le=64, description="Decode worker processes.")
    timeout_s: float = Field(30.0, gt=0, description="Per-video decode time limit (s).")
    flow_field_s: float = Field(
        0.3,
        ge=0,
        description="CPU seconds one TV-L1 optical-flow field takes (P3D's frames on a 2-core "
        "box: ~0.3 s; the timings' flow_ms divided by the fields gives yours). A flow request "
        "whose fields would take longer than decode_timeout_s is refused before any work (422); "
        "0 turns the check off.",
    )
    memory_mb: int | None = Field(
        2048, ge=256, description="Address-space limit of each worker, MiB (None: no cap)."
    )
    jobs_per_worker: int | None = Field(
        None, ge=1, description="Jobs before a worker is replaced by a fresh one (None: never)."
    )
    # Measured on the 2-core box with nothing else running: under load, one thread per worker
    # gave 1.28-1.46x the throughput of FFmpeg's own choice (frame threads cost CPU in
    # hand-offs the other worker needed; benchmarks/load.py --variant), while a lone 1080p
    # request decoded 1.57x faster with frame threads on the idle cores. Adaptive takes both.
    decoder_threads: int | None = Field(
        None,
        ge=0,
        le=64,
        description="FFmpeg decoder threads per job. None: adaptive, a job gets the share of "
        "the workers not busy when it starts (workers ÷ busy workers, at least 1: all of them "
        "for a lone request, one each under load); 0: FFmpeg picks; N: always N.",
    )
    max_pending: int | None = Field(
        None,
        ge=1,
        description="Requests waiting for a decode worker or decoding; more are refused (429). "
        "None: 2 per worker (one decoding, one waiting), so an accepted request waits for at "
        "most about one decode.",
    )
    nice: int = Field(
        5,
        ge=0,
        le=19,
        description="Niceness added to the decode workers: under saturation the event loop "
        "(admission, uploads, refusals) and inference, which finish admitted requests, run "
        "first.",
    )
    max_wait_s: float | None = Field(
        None,
        gt=0,
        description="Also refuse (429) while the decode backlog would keep a new request "
        "waiting longer than this many seconds, at the measured decode time (None: off).",
    )
    job_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of the decode workers that durable jobs (/jobs) may hold at once "
        "(at least one worker). Jobs take a worker only when no interactive request is "
        "waiting for one, so /classify keeps priority.",
    )

    @property
    def job_workers(self) -> int:
        """Decode workers jobs may hold at once."""
        return max(1, math.floor(self.workers * self.job_share))


class DecodePool:
    """A pool of decode worker processes with an asyncio face, run as `settings` say and
    checking every video against `limits`.

    Requests wait for a worker in a bounded backlog (`max_pending`, then `Overloaded`), and a
    freed worker goes to the next client in turn (`FairSlots`), so one client's heavy uploads
    cannot starve the others. The pool measures how long a decode takes, which is what its
    backlog's drain estimate (Retry-After) rests on.
    """

    def __init__(self, settings: DecodeSettings, limits: VideoLimits) -> None:
        self.settings = settings
        self.limits = limits
        self.workers = settings.workers
        self.timeout_s = settings.timeout_s
        self.memory_limit_bytes = settings.memory_mb * 2**20 if settings.memory_mb else None
        self.decoder_threads = settings.decoder_threads
        self.max_pending = settings.max_pending or 2 * settings.workers
        self._slots = FairSlots(
            self.workers,
            background_slots=settings.job_workers,
            background_max_wait_s=JOB_MAX_WAIT_S,
        )
        self._pool: pebble.ProcessPool | None = None
        self._decode_s = _Average(initial=1.0)

    @property
    def backlog(self) -> int:
        """Jobs waiting for a worker or running."""
        return self._slots.waiting + self._slots.busy

    def drain_estimate_s(self) -> float:
        """Seconds until the backlog is decoded, at the measured time per decode."""
        return self.backlog * self._decode_s.value / self.workers

    def full(self) -> str | None:
        """Why a new request should be refused now, or None: the backlog at its count bound,
        or waiting for a worker would take longer than `max_wait_s`."""
        if (at_bound := self._at_count_bound()) is not None:
            return at_bound
        wait, bound = self.drain_estimate_s(), self.settings.max_wait_s
        if bound is not None and self._slots.waiting and wait > bound:
            return (
                f"the decode backlog would keep a new request waiting about {wait:.1f} s "
                f"(limit {bound:g} s, ACTSERVE_MAX_DECODE_WAIT_S)"
            )
        return None

    def _at_count_bound(self) -> str | None:
        if self.backlog < self.max_pending:
            return None
        return (
            f"{self.backlog} requests are waiting for or in decoding (limit "
            f"{self.max_pending}, ACTSERVE_MAX_PENDING_DECODES)"
        )

    async def start(self) -> None:
        """Start the workers and wait until each one can take a job.

        Workers are spawned: each imports the parent's `__main__` module again, so a script
        that starts a pool needs the `if __name__ == "__main__":` guard.
        """
        try:
            await asyncio.gather(*(self.run(os.getpid) for _ in range(self.workers)))
        except (DecodeFailed, WorkerCrashed) as error:
            raise RuntimeError(f"the decode workers could not start: {error}") from error

    async def close(self, grace_s: float = 10.0) -> None:
        """Let running jobs finish for up to `grace_s`, then stop the workers."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(_shut_down, pool, grace_s)

    async def __aenter__(self) -> DecodePool:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def decode_streams(
        self,
        path: str | os.PathLike[str],
        recipes: tuple[Recipe, ...],
        options: DecodeOptions | None = None,
        *,
        client: str = "-",
    ) -> tuple[DecodedVideo, ...]:
        """Index, plan and decode `path` in a worker (once one is free for `client`) for each
        of `recipes` (a two-stream model's rgb and flow) in one job: each frame is decoded
        once; flow is computed in the worker, within its timeout. Crop and normalise off the
        event loop. `Overloaded` when the backlog is full."""
        if (at_bound := self._at_count_bound()) is not None:
            raise Overloaded(
                f"{at_bound}; retry later", retry_after=max(1, math.ceil(self.drain_estimate_s()))
            )
        started = time.perf_counter()
        sampled, waited = await self.sample(path, recipes, options, client=client)
        self._decode_s.add(time.perf_counter() - started - waited)
        pairs = zip(sampled, recipes, strict=True)
        videos = await asyncio.gather(*(asyncio.to_thread(assemble_views, *p) for p in pairs))
        return tuple(replace(video, wait_s=waited) for video in videos)

    async def sample(
        self,
        path: str | os.PathLike[str],
        recipes: tuple[Recipe, ...],
        options: DecodeOptions | None = None,
        window_range: tuple[int, int] | None = None,
        *,
        client: str = "-",
        background: bool = False,
    ) -> tuple[tuple[SampledFrames, ...], float]:
        """`sample_streams` in a worker in `client`'s turn, with the decoder threads chosen
        when the job starts (`job_threads`); also returns the seconds waited for a worker.
        `background` work (a durable job's chunk) waits until no request does, within the
        jobs' share of the workers (`DecodeSettings.job_share`)."""
        options = options or DecodeOptions()

        def arguments() -> tuple[Any, ...]:
            threads = options.decoder_threads or self.job_threads()
            threaded = options.model_copy(update={"decoder_threads": threads})
            return os.fspath(path), recipes, threaded, self.limits, window_range

        return await self._run(client, sample_streams, arguments, background=background)

    def job_threads(self) -> int:
        """Decoder threads for a job starting now (0: FFmpeg's choice): the setting, or when
        adaptive, the workers' share per busy worker, this job's included."""
        if self.decoder_threads is not None:
            return self.decoder_threads
        return max(1, self.workers // max(1, self._slots.busy))

    async def run(
        self, function: Callable[..., T], *args: Any, client: str = "-", background: bool = False
    ) -> T:
        """Run a picklable module-level `function(*args)` in a worker under the pool's limits,
        in `client`'s turn.

        The seam the decode jobs go through (and tests use to run hanging or crashing jobs).
        Worker failures become `DecodeTimeout`, `DecodeOutOfMemory` or `WorkerCrashed`;
        cancelling the awaiting task stops the worker running the job.
        """
        result, _ = await self._run(client, function, lambda: args, background=background)
        return result

    async def _run(
        self,
        client: str,
        function: Callable[..., T],
        arguments: Callable[[], tuple[Any, ...]],
        *,
        background: bool = False,
    ) -> tuple[T, float]:
        """`run` in `client`'s turn, its `arguments()` made once the turn comes; also returns
        the seconds waited for a worker. A worker that dies is replaced and the job tried once
        more on the fresh one: an idle worker killed from outside, or by the kernel's OOM
        killer, is not the request's fault; a second death is reported as `WorkerCrashed`
        (503)."""
        async with self._slots.turn(client, background=background) as waited:
            args = arguments()
            try:
                return await self._run_once(function, args), waited
            except WorkerCrashed as crash:
                logger.warning("%s; trying the job once more on a fresh worker", crash)
            try:
                return await self._run_once(function, args), waited
            except WorkerCrashed as crash:
                raise WorkerCrashed(crash.exitcode, again=True) from None

    async def _run_once(self, function: Callable[..., T], args: tuple[Any, ...]) -> T:
        future = self._schedule(function, args)
        try:
            return await asyncio.wrap_future(future)
        except TimeoutError as error:
            if error.args[:1] == ("Task timeout",):
                raise DecodeTimeout(self.timeout_s) from None
            raise
        except pebble.ProcessExpired as error:
            raise WorkerCrashed(error.exitcode) from None
        except concurrent.futures.process.BrokenProcessPool:
            self._discard_pool()  # the next job starts a fresh pool
            raise WorkerCrashed(None) from None

    def _schedule(self, function: Callable[..., T], args: tuple[Any, ...]) -> Any:
        try:
            job = (request_id_var.get(), function, *args)
            return self._ensure_pool().schedule(_run_job, job, timeout=self.timeout_s)
        except RuntimeError:  # pebble refuses work once a pool is broken or stopped
            self._discard_pool()
            return self._ensure_pool().schedule(_run_job, job, timeout=self.timeout_s)

    def _ensure_pool(self) -> pebble.ProcessPool:
        if self._pool is not None and not self._pool.active:
            self._discard_pool()
        if self._pool is None:
            self._pool = pebble.ProcessPool(
                max_workers=self.workers,
                max_tasks=self.settings.jobs_per_worker or 0,
                initializer=_start_worker,
                initargs=(self.memory_limit_bytes, self.settings.nice, active_settings()),
                context=multiprocessing.get_context("spawn"),
            )
        return self._pool

    def _discard_pool(self) -> None:
        """Forget a broken pool; its workers are stopped on a background thread."""
        pool, self._pool = self._pool, None
        if pool is not None:
            threading.Thread(target=_shut_down, args=(pool, 0.0), daemon=True).start()


class _Average:
    """An exponentially weighted moving average (the last ~10 values weigh most)."""

    def __init__(self, initial: float, weight: float = 0.2) -> None:
        self.value = initial
        self.weight = weight
        self._seen = False

    def add(self, value: float) -> None:
        if not self._seen:
            self.value, self._seen = value, True
        else:
            self.value += self.weight * (value - self.value)


def _shut_down(pool: pebble.ProcessPool, grace_s: float) -> None:
    pool.close()
    try:
        pool.join(timeout=grace_s)
    except TimeoutError:
        pool.stop()
        pool.join()


def _start_worker(memory_limit_bytes: int | None, nice: int, log: LogSettings | None) -> None:
    """Worker initializer: log as the server does, lower the worker's priority and cap its
    address space before the first job."""
    global _memory_limit
    start_worker_logging(log)
    _memory_limit = memory_limit_bytes
    if nice:
        os.nice(nice)
    if memory_limit_bytes is not None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))


def _run_job(request_id: str, function: Callable[..., T], *args: Any) -> T:
    """Run a job in the worker, its log records tagged with the request's id, turning an
    allocation failure into a typed, picklable error."""
    name = getattr(function, "__name__", "job")
    with job_context(request_id):
        started = time.perf_counter()
        try:
            result = function(*args)
        except MemoryError:
            worker_logger.warning("%s ran out of memory", name)
            raise DecodeOutOfMemory(_memory_limit) from None
        except Exception as error:
            worker_logger.debug("%s failed: %s", name, error)
            raise
        worker_logger.debug("%s done in %.1f ms", name, (time.perf_counter() - started) * 1000)
        return result
