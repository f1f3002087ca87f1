"""View-level dynamic batching for one loaded model version.

Requests bring V views each (clips × crops). The batcher queues views, not requests: a batch
takes views from the head of the queue up to `max_batch_views`, so one request's views may
span batches and several requests share one. A batch leaves when it is full or when the
OLDEST waiting view has waited `max_delay_s` (Triton's semantics; a delay counted from when
the loop polled would let a lone request wait forever under a steady trickle), and only while
batch-mates may still come: when `upstream` says no request is uploading, waiting for a decode
worker, decoding or sending tensors, the batch leaves at once (a lone request on an idle
service pays no delay; `delay_when_idle` restores Triton's rule). Results are written back
into each request's own buffers and its future resolves when all its views are done.

Inference runs in the batcher's own threads, so the event loop keeps accepting uploads and
decoding other requests meanwhile: one batch at a time, or up to the runtime's `lanes` at once
(OpenVINO's streams, each on its own share of the cores), so that a batch forms and starts
while the previous one still runs. A request that times out or whose client leaves drops its
views that have not been batched yet. If a batch fails, each request's views run again alone
and only the requests that fail alone get the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_settings import NoDecode

from service.errors import DeadlineExceeded, InferenceFailed, NotReady, Overloaded
from service.runtimes import Runtime
from service.video.limits import split_commas

logger = logging.getLogger("actserve.batching")


@dataclass(frozen=True)
class ViewOutputs:
    """Per-view results of one request, in the order its views were submitted."""

    logits: np.ndarray  # (V, K)
    embedding: np.ndarray  # (V, D)
    queue_seconds: float  # enqueue -> its last view taken into a batch
    inference_seconds: float  # summed run time of the batches it took part in
    batches: int


@dataclass(eq=False)
class PendingViews:
    """One request's views in the queue, and the buffers its results land in."""

    views: np.ndarray  # (V, C, T, H, W) float32
    enqueued_at: float
    future: asyncio.Future[ViewOutputs]
    taken: int = 0
    done: int = 0
    forgotten: bool = False
    queue_seconds: float = 0.0
    inference_seconds: float = 0.0
    batches: int = 0
    logits: np.ndarray | None = None
    embedding: np.ndarray | None = None

    @property
    def count(self) -> int:
        return len(self.views)


@dataclass
class BatchObserver:
    """Hooks the metrics layer fills in; the batcher itself knows nothing of Prometheus."""

    on_batch: Callable[[int, float], None] = lambda views, seconds: None
    on_queue_depth: Callable[[int], None] = lambda views: None


class BatchingSettings(BaseModel):
    """How views are batched; the `batching` group of the service's settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_batch_views: int = Field(32, ge=1, le=1024, description="Views per inference batch.")
    max_delay_ms: float = Field(
        5.0, ge=0, le=10_000, description="Longest wait of the oldest view for batch-mates."
    )
    delay_when_idle: bool = Field(
        False,
        description="Wait max_delay_ms for batch-mates even when no other request is uploading "
        "or decoding (Triton's rule); by default a lone request's views leave at once.",
    )
    max_queue_views: int = Field(
        512, ge=1, description="Views allowed to wait per model version; more → 429."
    )
    warmup_batch_sizes: Annotated[
        list[int | Literal["max"]], NoDecode, BeforeValidator(split_commas)
    ] = Field(
        default_factory=lambda: [1],
        description="Batch sizes run once at load (comma-separated); 'max' = max_batch_views.",
    )

    @property
    def max_delay_s(self) -> float:
        return self.max_delay_ms / 1000

    def resolved_warmup_sizes(self) -> tuple[int, ...]:
        sizes = {self.max_batch_views if s == "max" else s for s in self.warmup_batch_sizes}
        return tuple(sorted({min(s, self.max_batch_views) for s in sizes if s >= 1}))


@dataclass
class Batcher:
    runtime: Runtime
    settings: BatchingSettings = field(default_factory=BatchingSettings)
    observer: BatchObserver = field(default_factory=BatchObserver)
    name: str = "model"
    #: Requests that may still bring views (uploading, waiting for or in decoding); None:
    #: unknown, always wait up to `max_delay_s` for batch-mates.
    upstream: Callable[[], int] | None = None

    def __post_init__(self) -> None:
        self.max_batch_views = self.settings.max_batch_views
        self.max_delay_s = self.settings.max_delay_s
        #: Views allowed to wait; beyond it submissions are refused with Retry-After.
        self.max_queue_views = self.settings.max_queue_views
        self._queue: deque[PendingViews] = deque()
        self._queued_views = 0
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._views_per_second = 0.0
        #: Batches the runtime may run at once (its infer requests; 1 for most runtimes).
        self.lanes = max(1, getattr(self.runtime, "lanes", 1))
        self._running: set[asyncio.Task[None]] = set()
        self._executor = ThreadPoolExecutor(self.lanes, thread_name_prefix=f"infer-{self.name}")
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ public face

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._loop(), name=f"batcher-{self.name}"
        )

    async def submit(self, views: np.ndarray, *, deadline: float) -> ViewOutputs:
        """Queue (V, C, T, H, W) views and wait for their outputs until `deadline`
        (the event loop's clock)."""
        if self._closing or self._task is None:
            raise NotReady(f"{self.name} is not accepting requests (draining or not started)")
        count = len(views)
        if self._queued_views and self._queued_views + count > self.max_queue_views:
            raise Overloaded(
                f"{self.name}: {self._queued_views} views are waiting (limit "
                f"{self.max_queue_views}); retry later",
                retry_after=self._retry_after(),
            )
        loop = asyncio.get_running_loop()
        pending = PendingViews(views=views, enqueued_at=loop.time(), future=loop.create_future())
        self._queue.append(pending)
        self._queued_views += count
        self._idle.clear()
        self._wakeup.set()
        self.observer.on_queue_depth(self._queued_views)
        try:
            async with asyncio.timeout_at(deadline):
                return await pending.future
        except TimeoutError:
            raise DeadlineExceeded(
                f"the request's deadline passed with {count - pending.done} of its {count} "
                "views still queued or running"
            ) from None
        finally:
            if not pending.future.done():
                pending.future.cancel()
            self._forget(pending)

    async def close(self, timeout: float = 30.0) -> None:
        """Refuse new work, let queued work finish (up to `timeout`), stop the thread."""
        self._closing = True
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            logger.warning(
                "%s: %d views still queued at close; dropping", self.name, self._queued_views
            )
        tasks = [t for t in (self._task, *self._running) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for pending in list(self._queue):
            if not pending.future.done():
                pending.future.set_exception(NotReady(f"{self.name} was unloaded"))
            self._forget(pending)
        # A run cancelled above still finishes on its thread: wait for it off the event loop.
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    # ------------------------------------------------------------------ the loop

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._drop_abandoned_head()
            if not self._queue or len(self._running) >= self.lanes:
                if not self._queue and not self._running:
                    self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()  # a submission, a forgotten request or a lane freed
                continue
            flush_at = self._queue[0].enqueued_at + self.max_delay_s
            while (
                self._queued_views < self.max_batch_views
                and loop.time() < flush_at
                and self._mates_may_come()
            ):
                self._wakeup.clear()
                try:
                    async with asyncio.timeout_at(flush_at):
                        await self._wakeup.wait()
                except TimeoutError:
                    break
            batch = self._take_batch(loop.time())
            if batch:
                task = loop.create_task(self._run(batch), name=f"batch-{self.name}")
                self._running.add(task)
                task.add_done_callback(self._lane_freed)

    def _lane_freed(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wakeup.set()

    def _mates_may_come(self) -> bool:
        return self.settings.delay_when_idle or self.upstream is None or self.upstream() > 0

    def _take_batch(self, now: float) -> list[tuple[PendingViews, int, int]]:
        batch, room = [], self.max_batch_views
        while self._queue and room:
            pending = self._queue[0]
            if pending.future.done():
                self._forget(pending)
                continue
            take = min(room, pending.count - pending.taken)
            batch.append((pending, pending.taken, pending.taken + take))
            pending.taken += take
            self._queued_views -= take
            room -= take
            if pending.taken == pending.count:
                pending.queue_seconds = now - pending.enqueued_at
                self._queue.popleft()
        self.observer.on_queue_depth(self._queued_views)
        return batch

    async def _run(self, batch: list[tuple[PendingViews, int, int]]) -> None:
        loop = asyncio.get_running_loop()
        parts = [p.views[a:b] for p, a, b in batch]
        clips = parts[0] if len(parts) == 1 else np.concatenate(parts)
        started = time.perf_counter()
        try:
            outputs = await loop.run_in_executor(self._executor, self.runtime.run, clips)
        except Exception as exc:
            await self._isolate(batch, exc)
            return
        seconds = time.perf_counter() - started
        self._record_speed(len(clips), seconds)
        self.observer.on_batch(len(clips), seconds)
        offset = 0
        for pending, a, b in batch:
            n = b - a
            self._deliver(
                pending,
                a,
                b,
                outputs.logits[offset : offset + n],
                outputs.embedding[offset : offset + n],
                seconds,
            )
            offset += n

    async def _isolate(self, batch: list[tuple[PendingViews, int, int]], error: Exception) -> None:
        """A failed batch: rerun each request's part alone so one bad request cannot fail
        its batch-mates."""
        loop = asyncio.get_running_loop()
        if len(batch) == 1:
            self._fail(batch[0][0], error)
            return
        logger.warning(
            "%s: a batch of %d requests failed (%s); retrying one by one",
            self.name,
            len(batch),
            error,
        )
        for pending, a, b in batch:
            if pending.future.done():
                continue
            started = time.perf_counter()
            try:
                outputs = await loop.run_in_executor(
                    self._executor, self.runtime.run, pending.views[a:b]
                )
            except Exception as exc:
                self._fail(pending, exc)
                continue
            seconds = time.perf_counter() - started
            self.observer.on_batch(b - a, seconds)
            self._deliver(pending, a, b, outputs.logits, outputs.embedding, seconds)

    # ------------------------------------------------------------------ bookkeeping

    def _deliver(
        self,
        pending: PendingViews,
        a: int,
        b: int,
        logits: np.ndarray,
        embedding: np.ndarray,
        seconds: float,
    ) -> None:
        if pending.future.done():
            return
        if pending.logits is None:
            pending.logits = np.empty((pending.count, logits.shape[1]), np.float32)
            pending.embedding = np.empty((pending.count, embedding.shape[1]), np.float32)
        pending.logits[a:b] = logits
        pending.embedding[a:b] = embedding
        pending.done += b - a
        pending.inference_seconds += seconds
        pending.batches += 1
        if pending.done == pending.count:
            pending.future.set_result(
                ViewOutputs(
                    pending.logits,
                    pending.embedding,
                    pending.queue_seconds,
                    pending.inference_seconds,
                    pending.batches,
                )
            )

    def _fail(self, pending: PendingViews, error: Exception) -> None:
        logger.error("%s: inference failed: %s", self.name, error)
        if not pending.future.done():
            pending.future.set_exception(InferenceFailed(f"{self.name}: inference failed: {error}"))
        self._forget(pending)

    def _forget(self, pending: PendingViews) -> None:
        """Take a finished or abandoned request out of the queue (idempotent)."""
        if pending.forgotten:
            return
        pending.forgotten = True
        if pending.taken < pending.count:
            self._queued_views -= pending.count - pending.taken
            pending.taken = pending.count
            with contextlib.suppress(ValueError):  # already taken off the head
                self._queue.remove(pending)
        self.observer.on_queue_depth(self._queued_views)
        if not self._queue:
            self._wakeup.set()  # let the loop notice it is idle

    def _drop_abandoned_head(self) -> None:
        while self._queue and self._queue[0].future.done():
            self._forget(self._queue[0])

    def _record_speed(self, views: int, seconds: float) -> None:
        rate = views / max(seconds, 1e-6)
        self._views_per_second = (
            rate if not self._views_per_second else (0.8 * self._views_per_second + 0.2 * rate)
        )

    def backlog_seconds(self) -> float:
        """Seconds until the queue has likely drained, from the measured views/second."""
        if not self._views_per_second:
            return 0.0
        return self._queued_views / (self._views_per_second * self.lanes)

    def _retry_after(self) -> int:
        return max(1, min(60, math.ceil(self.backlog_seconds())))
