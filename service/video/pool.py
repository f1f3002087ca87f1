"""Decode worker processes: untrusted files never reach FFmpeg in the service's own process.

Each job (probe, or probe + scan + plan + decode) runs in a worker process under a wall-clock
timeout and an address-space limit (RLIMIT_AS), so a crashing, hanging or memory-hungry
decode fails only its own request with a typed error and its worker is replaced. The pool is
pebble's `ProcessPool`: per-task timeouts that terminate the worker, a fresh worker after a
crash, cancellation of running tasks (a dropped client stops its decode) and worker recycling
after `jobs_per_worker` jobs. Workers are spawned, not forked: the parent may hold
threads (uvicorn, inference runtimes) that a fork would copy mid-lock.

    pool = DecodePool(DecodeSettings(workers=2, timeout_s=60), VideoLimits())
    await pool.start()                      # FastAPI lifespan, before `yield`
    video = await pool.decode(path, spec.recipe, DecodeOptions(profile="fast"))
    video.views                             # (V, C, T, H, W) float32
    await pool.close()                      # after `yield`
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
import resource
import threading
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import pebble
from pydantic import BaseModel, ConfigDict, Field

from model_store.spec import Recipe
from service.errors import DecodeFailed, DecodeOutOfMemory, DecodeTimeout, WorkerCrashed
from service.video.index import VideoInfo, probe_video
from service.video.job import DecodedVideo, DecodeOptions, assemble_views, sample_frames
from service.video.limits import VideoLimits

__all__ = ["DecodePool", "DecodeSettings"]

T = TypeVar("T")

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

    #: Flat `ACTSERVE_*` names that differ from the field's name.
    flat_names: ClassVar[dict[str, str]] = {
        "workers": "decode_workers",
        "timeout_s": "decode_timeout_s",
        "memory_mb": "decode_memory_mb",
        "jobs_per_worker": "decode_jobs_per_worker",
    }

    workers: int = Field(2, ge=1, le=64, description="Decode worker processes.")
    timeout_s: float = Field(30.0, gt=0, description="Per-video decode time limit (s).")
    memory_mb: int | None = Field(
        2048, ge=256, description="Address-space limit of each worker, MiB (None: no cap)."
    )
    jobs_per_worker: int | None = Field(
        100, ge=1, description="Jobs before a worker is replaced by a fresh one (None: never)."
    )


class DecodePool:
    """A pool of decode worker processes with an asyncio face, run as `settings` say and
    checking every video against `limits`."""

    def __init__(self, settings: DecodeSettings, limits: VideoLimits) -> None:
        self.settings = settings
        self.limits = limits
        self.workers = settings.workers
        self.timeout_s = settings.timeout_s
        self.memory_limit_bytes = settings.memory_mb * 2**20 if settings.memory_mb else None
        self._pool: pebble.ProcessPool | None = None
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Jobs submitted and not yet finished (running or waiting for a worker)."""
        return self._in_flight

    async def start(self) -> None:
        """Start the workers and wait until each one can take a job.

        Workers are spawned: each imports the parent's `__main__` module again, so a script
        that starts a pool needs the `if __name__ == "__main__":` guard.
        """
        try:
            await asyncio.gather(*(self.run(os.getpid) for _ in range(self.workers)))
        except DecodeFailed as error:
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

    async def decode(
        self, path: str | os.PathLike[str], recipe: Recipe, options: DecodeOptions | None = None
    ) -> DecodedVideo:
        """Probe, plan and decode `path` in a worker; crop and normalise off the event loop."""
        options = options or DecodeOptions()
        sampled = await self.run(sample_frames, os.fspath(path), recipe, options, self.limits)
        return await asyncio.to_thread(assemble_views, sampled, recipe)

    async def probe(self, path: str | os.PathLike[str]) -> VideoInfo:
        """The header checks and first frame of `probe_video`, in a worker."""
        return await self.run(probe_video, os.fspath(path), self.limits)

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """Run a picklable module-level `function(*args)` in a worker under the pool's limits.

        The seam the decode jobs go through (and tests use to run hanging or crashing jobs).
        Worker failures become `DecodeTimeout`, `DecodeOutOfMemory` or `WorkerCrashed`;
        cancelling the awaiting task stops the worker running the job.
        """
        future = self._schedule(function, args)
        self._in_flight += 1
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
        finally:
            self._in_flight -= 1

    def _schedule(self, function: Callable[..., T], args: tuple[Any, ...]) -> Any:
        try:
            return self._ensure_pool().schedule(_run_job, (function, *args), timeout=self.timeout_s)
        except RuntimeError:  # pebble refuses work once a pool is broken or stopped
            self._discard_pool()
            return self._ensure_pool().schedule(_run_job, (function, *args), timeout=self.timeout_s)

    def _ensure_pool(self) -> pebble.ProcessPool:
        if self._pool is not None and not self._pool.active:
            self._discard_pool()
        if self._pool is None:
            self._pool = pebble.ProcessPool(
                max_workers=self.workers,
                max_tasks=self.settings.jobs_per_worker or 0,
                initializer=_start_worker,
                initargs=(self.memory_limit_bytes,),
                context=multiprocessing.get_context("spawn"),
            )
        return self._pool

    def _discard_pool(self) -> None:
        """Forget a broken pool; its workers are stopped on a background thread."""
        pool, self._pool = self._pool, None
        if pool is not None:
            threading.Thread(target=_shut_down, args=(pool, 0.0), daemon=True).start()


def _shut_down(pool: pebble.ProcessPool, grace_s: float) -> None:
    pool.close()
    try:
        pool.join(timeout=grace_s)
    except TimeoutError:
        pool.stop()
        pool.join()


def _start_worker(memory_limit_bytes: int | None) -> None:
    """Worker initializer: cap the address space before the first job."""
    global _memory_limit
    _memory_limit = memory_limit_bytes
    if memory_limit_bytes is not None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))


def _run_job(function: Callable[..., T], *args: Any) -> T:
    """Run a job in the worker, turning an allocation failure into a typed, picklable error."""
    try:
        return function(*args)
    except MemoryError:
        raise DecodeOutOfMemory(_memory_limit) from None
