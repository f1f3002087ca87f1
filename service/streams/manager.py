"""The registry of live streams: add, remove, list, restore after a restart, subscribe.

A definition is checked (URL against the allow-list and SSRF rules, the model served and of a
kind streams can run, the webhook's URL and secret) before it is stored; it is stored before
its stream starts, and removed before its stream stops, so a crash between the two steps
leaves the database saying what should run.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from service.errors import BadRequest, ServiceError, StreamNotFound, TooManyStreams
from service.net_policy import UrlPolicy
from service.streams.delivery import WEBHOOK_GIVE_UP_S, EventWebhook, StreamMetrics
from service.streams.schemas import StreamCreate, StreamEvent, StreamPublic
from service.streams.serving import Serving
from service.streams.settings import STREAM_SCHEMES
from service.streams.store import StreamStore
from service.streams.stream import LiveStream
from service.webhooks import WebhookSender

logger = logging.getLogger("actserve.streams")


class StreamManager:
    def __init__(self, serving: Serving) -> None:
        self.serving = serving
        settings = serving.settings
        self.policy = UrlPolicy.parse(
            settings.allowed, schemes=STREAM_SCHEMES, setting="ACTSERVE_STREAMS_ALLOWED"
        )
        #: Webhooks: http(s) only, and the allow-list's networks (its URL patterns are for
        #: stream sources).
        self.webhook_policy = UrlPolicy(
            networks=self.policy.networks, setting="ACTSERVE_STREAMS_ALLOWED"
        )
        jobs = serving.jobs
        secret = jobs.webhook_secret
        self.webhook_sender = (
            WebhookSender(
                secret.get_secret_value(), self.webhook_policy, give_up_after_s=WEBHOOK_GIVE_UP_S
            )
            if secret is not None
            else None
        )
        self.store = StreamStore(
            jobs.url(), None if jobs.database_url else jobs.directory() / "jobs.db"
        )
        self.metrics = StreamMetrics(serving.registry)
        self._streams: dict[str, LiveStream] = {}
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Bring back the stored streams (one whose model is no longer served stays listed,
        stopped, saying why)."""
        for stored in await asyncio.to_thread(self.store.load):
            stream = self._make(stored.id, stored.definition, stored.created_at)
            self._streams[stored.id] = stream
            try:
                stream.start(self.serving.target(*_selectors(stored.definition)))
            except ServiceError as error:
                stream.fail(f"not restarted: {error}")
        if self._streams:
            logger.info("restored %d live streams", len(self._streams))

    async def close(self) -> None:
        await asyncio.gather(*(s.stop("stopped") for s in self._streams.values()))
        self._streams.clear()
        await asyncio.to_thread(self.store.close)

    # ------------------------------------------------------------------ the API

    async def add(self, definition: StreamCreate) -> StreamPublic:
        target = self.serving.target(*_selectors(definition))
        await asyncio.to_thread(self.policy.check, definition.url)
        if definition.events.labels:
            unknown = sorted(set(definition.events.labels) - set(target.labels))
            if unknown:
                raise BadRequest(f"{target.key} has no label(s) {', '.join(map(repr, unknown))}")
        if definition.webhook_url is not None:
            if self.serving.jobs.webhook_secret is None:
                raise BadRequest("webhooks need a signing secret: set ACTSERVE_WEBHOOK_SECRET")
            await asyncio.to_thread(self.webhook_policy.check, definition.webhook_url)
        async with self._lock:
            if len(self._streams) >= self.serving.settings.max_streams:
                raise TooManyStreams(
                    f"{len(self._streams)} streams run already (ACTSERVE_STREAMS_MAX="
                    f"{self.serving.settings.max_streams}); remove one first"
                )
            stream_id = uuid.uuid4().hex[:12]
            created = datetime.now(UTC)
            await asyncio.to_thread(self.store.add, stream_id, definition, created)
            stream = self._make(stream_id, definition, created)
            self._streams[stream_id] = stream
            stream.start(target)
        logger.info("stream %s added: %s", stream_id, stream.public().url)
        return stream.public()

    async def remove(self, stream_id: str) -> None:
        async with self._lock:
            stream = self.get(stream_id)
            await asyncio.to_thread(self.store.remove, stream_id)
            del self._streams[stream_id]
        await stream.stop("stopped")
        logger.info("stream %s removed", stream_id)

    def get(self, stream_id: str) -> LiveStream:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise StreamNotFound(f"no stream {stream_id!r}")
        return stream

    def list(self) -> list[StreamPublic]:
        return [stream.public() for stream in self._streams.values()]

    def events(self, stream_id: str) -> AsyncIterator[StreamEvent]:
        return self.get(stream_id).subscribers.events()

    # ------------------------------------------------------------------ helpers

    def _make(self, stream_id: str, definition: StreamCreate, created: datetime) -> LiveStream:
        webhook = None
        if definition.webhook_url is not None and self.webhook_sender is not None:
            url, sender, metrics = definition.webhook_url, self.webhook_sender, self.metrics

            def webhook() -> EventWebhook:
                return EventWebhook(
                    url, sender, on_failure=metrics.webhook_failures.labels(stream_id).inc
                )

        return LiveStream(
            stream_id, definition, created, self.serving, self.metrics, self.policy, webhook
        )


def _selectors(definition: StreamCreate) -> tuple[str | None, int | None, str | None]:
    return definition.model, definition.version, definition.alias
