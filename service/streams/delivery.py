"""Where a stream's events go: its SSE subscribers, its webhook, and Prometheus.

Subscribers each get a bounded queue: one that stops reading loses its oldest events, never
the service's memory. The webhook is POSTed one event at a time, in order, signed as Standard
Webhooks say (`webhook-id`, `webhook-timestamp`, `webhook-signature` over
`id.timestamp.body`, HMAC-SHA256 with ACTSERVE_WEBHOOK_SECRET), retried with exponential
backoff and jitter on a network error, a 429 or a 5xx; its URL is checked against the SSRF
rules before every attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram
from standardwebhooks import Webhook

from service.errors import UrlNotAllowed
from service.net_policy import UrlPolicy, redact
from service.streams.schemas import StreamEvent

logger = logging.getLogger("actserve.streams")

#: Events a subscriber may have unread before its oldest are dropped.
SUBSCRIBER_QUEUE = 256
#: Events waiting for the webhook before the oldest are dropped.
WEBHOOK_QUEUE = 1024
WEBHOOK_ATTEMPTS = 6
WEBHOOK_FIRST_RETRY_S = 1.0
WEBHOOK_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


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


class WebhookSender:
    """Posts one stream's events to its webhook, in order, in a task of its own."""

    def __init__(
        self, url: str, secret: str, policy: UrlPolicy, on_failure: Callable[[], None]
    ) -> None:
        self.url = url
        self.policy = policy
        self.webhook = Webhook(secret if secret.startswith("whsec_") else secret.encode())
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
        async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT, follow_redirects=False) as http:
            while True:
                event = await self._queue.get()
                try:
                    if not await self._deliver(http, event):
                        self.on_failure()
                finally:
                    self._queue.task_done()

    async def _deliver(self, http: httpx.AsyncClient, event: StreamEvent) -> bool:
        body = event.model_dump_json()
        for attempt in range(1, WEBHOOK_ATTEMPTS + 1):
            now = datetime.now(UTC)
            headers = {
                "content-type": "application/json",
                "webhook-id": event.id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": self.webhook.sign(event.id, now, body),
            }
            try:
                await asyncio.to_thread(self.policy.check, self.url)
                response = await http.post(self.url, content=body, headers=headers)
                if response.is_success:
                    return True
                problem = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code != 429:
                    break  # the receiver refuses it: retrying will not help
            except (httpx.HTTPError, UrlNotAllowed) as error:
                problem = str(error) or type(error).__name__
            if attempt < WEBHOOK_ATTEMPTS:
                bound = WEBHOOK_FIRST_RETRY_S * 2 ** (attempt - 1)
                await asyncio.sleep(random.uniform(bound / 2, bound))
        logger.warning("webhook %s gave up on event %s: %s", redact(self.url), event.id, problem)
        return False
