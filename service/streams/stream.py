"""One running stream: its reader process, its windows, its events and its statistics.

    reader process (source.py) --frames--> reader thread --> event loop: RingBuffer.push
        --window--> Serving.score (the model's batcher) --probabilities--> EventDetector
        --events--> subscribers, webhook, counters

A stream has at most one window in the model at a time: a window that comes due while the
previous one is still queued or running is dropped and counted, so a stream that cannot keep
up costs a bounded amount of memory and delays nobody else. The reader process is restarted
(with backoff) if it dies; it reconnects by itself when its source fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import queue as queues
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from service.errors import DeadlineExceeded, NotReady, Overloaded, ServiceError
from service.net_policy import UrlPolicy, redact
from service.streams.delivery import EventWebhook, StreamMetrics, Subscribers
from service.streams.events import EventDetector
from service.streams.schemas import (
    StreamCreate,
    StreamEvent,
    StreamPublic,
    StreamState,
    StreamStats,
)
from service.streams.serving import Serving, Target
from service.streams.source import SourceConfig, backoff, run_source
from service.streams.windows import Frame, Normaliser, RingBuffer, Window

logger = logging.getLogger("actserve.streams")

#: Seconds the windows/s rate is measured over.
RATE_WINDOW_S = 5.0
#: A window's deadline in the model: this many windows' strides, at least a few seconds.
DEADLINE_STRIDES = 4
MIN_DEADLINE_S = 2.0


class LiveStream:
    def __init__(
        self,
        stream_id: str,
        definition: StreamCreate,
        created_at: datetime,
        serving: Serving,
        metrics: StreamMetrics,
        policy: UrlPolicy,
        webhook: Callable[[], EventWebhook] | None,
    ) -> None:
        self.id = stream_id
        self.definition = definition
        self.created_at = created_at
        self.serving = serving
        self.metrics = metrics
        self.policy = policy
        self.subscribers = Subscribers()
        self._webhook_factory = webhook
        self.webhook: EventWebhook | None = None
        self.state = StreamState.CONNECTING
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None
        self.serving_key: str | None = None
        self.info: dict[str, Any] = {}
        self.windows = self.dropped_windows = self.dropped_frames = 0
        self.reconnects = self.events = 0
        self.input_fps = 0.0
        self.lag_s: float | None = None
        self._window_times: deque[float] = deque()
        self._offset: float | None = None  # min(arrival - stream time) of this connection
        self._target: Target | None = None
        self._detector: EventDetector | None = None
        self._normaliser: Normaliser | None = None
        self._ring: RingBuffer | None = None
        self._inflight: asyncio.Task[None] | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._queue: Any = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._supervisor: asyncio.Task[None] | None = None
        self._restarting: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._process_lock = threading.Lock()  # spawning and ending never overlap
        #: Frames handed to the loop and not yet taken: the reader thread waits at this
        #: bound (the reader process then drops frames), so a busy loop grows no backlog.
        self._in_hand = threading.BoundedSemaphore(serving.settings.frame_queue)

    # ------------------------------------------------------------------ lifecycle

    def start(self, target: Target) -> None:
        self._loop = asyncio.get_running_loop()
        self._use(target)
        if self._webhook_factory is not None:
            self.webhook = self._webhook_factory()
        self.metrics.start(self.id)
        self._supervisor = self._loop.create_task(self._supervise(), name=f"stream-{self.id}")

    def fail(self, message: str) -> None:
        """A stream that cannot run (its model is no longer served): kept, stopped, saying why."""
        self.state = StreamState.STOPPED
        self._error(message)

    async def stop(self, reason: str = "stopped") -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        await asyncio.to_thread(self._end_process)
        if self._inflight is not None:
            self._inflight.cancel()
            await asyncio.gather(self._inflight, return_exceptions=True)
        self._close_actions(reason)
        self.state = StreamState.STOPPED
        self.subscribers.close()
        if self.webhook is not None:
            await self.webhook.close()
        self.metrics.forget(self.id)

    async def _supervise(self) -> None:
        """Run the reader process; restart it (with backoff) whenever it dies."""
        attempt = 0
        while True:
            exited = asyncio.get_running_loop().create_future()
            started = time.monotonic()
            try:
                await asyncio.to_thread(self._spawn, exited)
                why = f"the reader process exited (code {await exited}); restarting"
            except OSError as error:  # no process to be had (limits, memory): try again
                why = f"cannot start the reader process: {error}"
            await asyncio.to_thread(self._end_process)
            if self._stopping:
                return
            attempt = 1 if time.monotonic() - started > 60 else attempt + 1
            self.reconnects += 1
            self.metrics.reconnects.labels(self.id).inc()
            self.state = StreamState.RECONNECTING
            self._error(why)
            self._disconnected()
            settings = self.serving.settings
            await asyncio.sleep(
                backoff(attempt, settings.reconnect_min_s, settings.reconnect_max_s)
            )

    def _spawn(self, exited: asyncio.Future[int | None]) -> None:
        """Start the reader process and the thread that carries its messages to the loop."""
        assert self._target is not None and self._loop is not None
        with self._process_lock:
            if self._stopping:
                return
            self._start_process(exited)

    def _start_process(self, exited: asyncio.Future[int | None]) -> None:
        assert self._target is not None
        settings = self.serving.settings
        config = SourceConfig(
            url=self.definition.url,
            recipe=self._target.recipe,
            window_s=self.definition.window_s,
            policy=self.policy,
            connect_timeout_s=settings.connect_timeout_s,
            read_timeout_s=settings.read_timeout_s,
            reconnect_min_s=settings.reconnect_min_s,
            reconnect_max_s=settings.reconnect_max_s,
            max_lag_s=settings.max_lag_s,
        )
        context = multiprocessing.get_context("spawn")
        self._queue = context.Queue(settings.frame_queue)
        self._process = context.Process(
            target=run_source, args=(config, self._queue), name=f"stream-{self.id}", daemon=True
        )
        self._process.start()
        self._thread = threading.Thread(
            target=self._carry,
            args=(self._process, self._queue, exited),
            name=f"stream-{self.id}",
            daemon=True,
        )
        self._thread.start()

    def _carry(self, process: Any, queue: Any, exited: asyncio.Future[int | None]) -> None:
        """(Reader thread.) Hand the process's messages to the loop until it exits."""
        loop = self._loop
        assert loop is not None
        while not self._stopping:
            try:
                message = queue.get(timeout=0.25)
            except queues.Empty:
                if not process.is_alive():
                    break
                continue
            except (EOFError, OSError, ValueError):
                break
            if message[0] == "frame":
                while not self._in_hand.acquire(timeout=0.25):
                    if self._stopping:
                        break
            loop.call_soon_threadsafe(self._on_message, message)
        loop.call_soon_threadsafe(_resolve, exited, process.exitcode)

    def _end_process(self) -> None:
        """(Blocking.) Stop the reader process, its thread and its queue, leaking nothing."""
        with self._process_lock:
            process, queue, thread = self._process, self._queue, self._thread
            self._process = self._queue = self._thread = None
        if process is not None:
            if process.is_alive():
                process.terminate()
                process.join(2)
            if process.is_alive():
                process.kill()
                process.join(2)
        if thread is not None and thread is not threading.current_thread():
            thread.join(2)
        if process is not None:
            process.close()
        if queue is not None:
            queue.close()
            queue.cancel_join_thread()

    # ------------------------------------------------------------------ messages

    def _on_message(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "frame":
            with contextlib.suppress(ValueError):  # released more than acquired: stopping
                self._in_hand.release()
        if self._stopping:
            return
        if kind == "frame":
            self._on_frame(Frame(message[1], message[2], message[3]))
        elif kind == "stats":
            read, dropped = message[1], message[2]
            self.input_fps = read if not self.input_fps else 0.7 * self.input_fps + 0.3 * read
            if dropped:
                self.dropped_frames += dropped
                self.metrics.dropped_frames.labels(self.id).inc(dropped)
        elif kind == "connecting":
            if self.state != StreamState.LIVE:
                ever = self.windows or self.reconnects
                self.state = StreamState.RECONNECTING if ever else StreamState.CONNECTING
        elif kind == "live":
            self.info = message[1]
            self.state = StreamState.LIVE
            self._offset = None
            assert self._ring is not None
            self._ring.reset(self.info["period_s"])
        elif kind == "error":
            self.reconnects += 1
            self.metrics.reconnects.labels(self.id).inc()
            self.state = StreamState.RECONNECTING
            self._error(f"{message[1]} (retrying in {message[2]:.1f} s)")
            self._disconnected()

    def _on_frame(self, frame: Frame) -> None:
        offset = frame.wall - frame.time_s
        self._offset = offset if self._offset is None else min(self._offset, offset)
        assert self._ring is not None
        window = self._ring.push(frame)
        if window is None:
            return
        if self._inflight is not None and not self._inflight.done():
            self._drop_window()
            return
        self._inflight = asyncio.get_running_loop().create_task(self._classify(window))

    async def _classify(self, window: Window) -> None:
        d = self.definition
        assert self._normaliser is not None
        view = self._normaliser(window)
        loop = asyncio.get_running_loop()
        period = (self._ring.period_s if self._ring else None) or 0.1
        budget = max(MIN_DEADLINE_S, DEADLINE_STRIDES * max(d.stride_s, period))
        try:
            scored = await self.serving.score(
                d.model, d.version, d.alias, view, deadline=loop.time() + budget
            )
        except (Overloaded, DeadlineExceeded, NotReady):
            self._drop_window()
            return
        except ServiceError as error:  # the model is gone: say so, keep reading
            self._error(str(error))
            self._drop_window()
            return
        if self._stopping:
            return
        if scored.key != self.serving_key:  # an alias moved, or the default version
            try:
                self._use(self.serving.target(d.model, d.version, d.alias))
            except ServiceError as error:
                self._error(str(error))
                return
        now = time.time()
        self.windows += 1
        self.metrics.windows.labels(self.id).inc()
        self._window_times.append(now)
        if self._offset is not None:
            self.lag_s = now - (window.times.end_s + self._offset)
            self.metrics.lag.observe(self.lag_s)
        assert self._detector is not None
        for event in self._detector.feed(scored.probabilities, window.times):
            self._emit(event)

    # ------------------------------------------------------------------ helpers

    def _use(self, target: Target) -> None:
        """Run on `target` (at start, and when an alias moves to another version)."""
        recipe = target.recipe
        previous = self._target
        if previous is not None:
            self._close_actions("model_changed")
        self._target = target
        if previous is not None and previous.recipe != recipe:
            # The reader samples and crops for the old recipe: restart it for the new one.
            self._restarting = asyncio.get_running_loop().create_task(
                asyncio.to_thread(self._end_process)
            )
        self.serving_key = target.key
        self._detector = EventDetector(self.id, target.labels, self.definition.events)
        self._normaliser = Normaliser(recipe)
        if self._ring is None or self._ring.clip_len != recipe.clip_len:
            self._ring = RingBuffer(recipe.clip_len, self.definition.stride_s)

    def _drop_window(self) -> None:
        self.dropped_windows += 1
        self.metrics.dropped_windows.labels(self.id).inc()

    def _disconnected(self) -> None:
        if self._ring is not None:
            self._ring.reset()
        self._close_actions("disconnected")

    def _close_actions(self, reason: str) -> None:
        if self._detector is not None:
            for event in self._detector.close(reason):
                self._emit(event)

    def _emit(self, event: StreamEvent) -> None:
        self.events += 1
        self.metrics.events.labels(self.id, event.label, event.type.value).inc()
        self.subscribers.publish(event)
        if self.webhook is not None:
            self.webhook.send(event)

    def _error(self, message: str) -> None:
        self.last_error = message
        self.last_error_at = datetime.now(UTC)
        logger.info("stream %s: %s", self.id, message)

    def public(self) -> StreamPublic:
        d = self.definition
        now = time.time()
        while self._window_times and self._window_times[0] < now - RATE_WINDOW_S:
            self._window_times.popleft()
        period = self.info.get("period_s")
        return StreamPublic(
            id=self.id,
            name=d.name,
            url=redact(d.url),
            model=d.model or (self._target.model if self._target else "-"),
            version=d.version,
            alias=d.alias,
            serving=self.serving_key,
            window_s=d.window_s,
            stride_s=d.stride_s,
            events=d.events,
            webhook_url=redact(d.webhook_url) if d.webhook_url else None,
            created_at=self.created_at,
            state=self.state,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            stats=StreamStats(
                input_fps=round(self.input_fps, 2),
                sample_fps=round(1 / period, 2) if period else None,
                lag_s=None if self.lag_s is None else round(self.lag_s, 3),
                windows_per_s=round(len(self._window_times) / RATE_WINDOW_S, 2),
                windows=self.windows,
                dropped_windows=self.dropped_windows,
                dropped_frames=self.dropped_frames,
                reconnects=self.reconnects,
                events=self.events,
                frame_size=self.info.get("frame_size"),
                codec=self.info.get("codec"),
            ),
        )


def _resolve(future: asyncio.Future[int | None], code: int | None) -> None:
    if not future.done():
        future.set_result(code)
