"""Where a stream's events go: its SSE subscribers, its webhook, and Prometheus.

Subscribers each get a bounded queue: one that stops reading loses its oldest events, never
the service's memory. The webhook is POSTed one event at a time, in order, by the service's
WebhookSender (service/webhooks.py, as for jobs): signed as Standard Webhooks say with
ACTSERVE_WEBHOOK_SECRET, the event's id as `webhook-id`, retried with exponential backoff and
jitter for up to WEBHOOK_GIVE_UP_S, its URL checked against the SSRF rules before every
attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from prometheus_client import CollectorRegistry, Counter, Histogram

from service.net_policy import redact
from service.streams.schemas import StreamEvent
from service.webhooks import WebhookSender

logger = logging.getLogger("actserve.streams")

#: Events a subscriber may have unread before its oldest are dropped.
SUBSCRIBER_QUEUE = 256
#: Events waiting for the webhook before the oldest are dropped.
WEBHOOK_QUEUE = 1024
#: Seconds an event's delivery is retried (waits of about 1, 2, 4, 8, 16 s) before it is
#: given up: later events wait behind it, and a live event goes stale.
WEBHOOK_GIVE_UP_S = 30.0


class StreamMetrics:
    """Per-stream counters (label values: the stream's id, which the service makes, and the
    model's labels)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.events = Counter(
            "actserve_stream_events",
            "Action events on live streams, by stream, label and type (start, end).",
            ["stream", "label", "type"],
            registry=r,
        )
        self.windows = Counter(
            "actserve_stream_windows", "Windows classified, by stream.", ["stream"], registry=r
        )
        self.dropped_windows = Counter(
            "actserve_stream_dropped_windows",
            "Windows skipped because the stream's previous window was still being classified "
            "or the model's queue was full, by stream.",
            ["stream"],
            registry=r,
        )
        self.dropped_frames = Counter(
            "actserve_stream_dropped_frames",
            "Sampled frames a stream's reader dropped because the service was behind.",
            ["stream"],
            registry=r,
        )
        self.reconnects = Counter(
            "actserve_stream_reconnects",
            "Connections of a stream lost or refused.",
            ["stream"],
            registry=r,
        )
        self.webhook_failures = Counter(
            "actserve_stream_webhook_failures",
            "Events whose webhook delivery gave up after every retry.",
            ["stream"],
            registry=r,
        )
        self.lag = Histogram(
            "actserve_stream_lag_seconds",
            "How late a window's probabilities came after its last frame arrived in real time "
            "(reading, the model's queue and run), every stream together.",
            buckets=(0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0),
            registry=r,
        )
        self._per_stream = [
            self.windows,
            self.dropped_windows,
            self.dropped_frames,
            self.reconnects,
            self.webhook_failures,
        ]

    def start(self, stream: str) -> None:
        for counter in self._per_stream:
            counter.labels(stream)  # at 0, so rate() sees the first increase

    def forget(self, stream: str) -> None:
        for counter in self._per_stream:
            with contextlib.suppress(KeyError):
                counter.remove(stream)
        for labels in list(self.events._metrics):
            if labels[0] == stream:
                self.events.remove(*labels)


class Subscribers:
    """The SSE readers of one stream."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[StreamEvent | None]] = set()
        self.dropped = 0

    def publish(self, event: StreamEvent) -> None:
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()
                self.dropped += 1
            queue.put_nowait(event)

    def close(self) -> None:
        """End every subscription (the stream was removed)."""
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)

    async def events(self) -> AsyncIterator[StreamEvent]:
        queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self._queues.add(queue)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._queues.discard(queue)


class EventWebhook:
    """Posts one stream's events to its webhook, in order, in a task of its own; signing,
    retries and the URL's checks are the service's WebhookSender's, as for jobs."""

    def __init__(self, url: str, sender: WebhookSender, on_failure: Callable[[], None]) -> None:
        self.url = url
        self.sender = sender
        self.on_failure = on_failure
        self._queue: asyncio.Queue[StreamEvent] = asyncio.Queue(WEBHOOK_QUEUE)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="webhook")

    def send(self, event: StreamEvent) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self._queue.task_done()
            self.on_failure()
        self._queue.put_nowait(event)

    async def close(self, timeout: float = 2.0) -> None:
        """Deliver what is queued (the stream's last `end` events) for up to `timeout`
        seconds, then stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._queue.join()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                delivery = await self.sender.deliver(
                    self.url, event.model_dump(mode="json"), message_id=event.id
                )
                if not delivery.delivered:
                    last = delivery.attempts[-1]
                    problem = last.error or f"HTTP {last.status_code}"
                    logger.warning(
                        "webhook %s gave up on event %s: %s", redact(self.url), event.id, problem
                    )
                    self.on_failure()
            finally:
                self._queue.task_done()
