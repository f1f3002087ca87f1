"""Signed webhook delivery: one message POSTed as the Standard Webhooks spec says, retried
with exponential backoff and jitter for a bounded time.

    sender = WebhookSender(secret, UrlPolicy.parse(allowed, schemes={"https"}))
    delivery = await sender.deliver(url, {"type": "job.succeeded", "data": {...}},
                                    on_attempt=record)   # called after every attempt

Each attempt carries the same `webhook-id` (receivers deduplicate on it), a fresh
`webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`
made by the `standardwebhooks` library with the operator's secret. A 2xx answer delivers the
message; anything else (a network error, a timeout, a 3xx, 4xx or 5xx) is retried after
`first_retry_s * 2**n` seconds (at most `max_retry_s`), each wait drawn between half and all
of that, until `give_up_after_s` has passed since the first attempt. The first attempt is
always made. Redirects are not followed, and the URL is checked against the SSRF rules
(service/net_policy.py) before every attempt: a refusal ends the delivery at once.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks import Webhook

from service.errors import UrlNotAllowed
from service.net_policy import UrlPolicy

TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@dataclass(frozen=True)
class Attempt:
    number: int
    at: float  # UNIX seconds
    duration_s: float
    status_code: int | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class Delivery:
    message_id: str
    delivered: bool
    attempts: list[Attempt] = field(default_factory=list)


AttemptHook = Callable[[Attempt], Awaitable[None] | None]


class WebhookSender:
    def __init__(
        self,
        secret: str,
        policy: UrlPolicy,
        *,
        give_up_after_s: float = 3600.0,
        first_retry_s: float = 1.0,
        max_retry_s: float = 300.0,
        timeout: httpx.Timeout = TIMEOUT,
    ) -> None:
        self.signer = Webhook(secret)
        self.policy = policy
        self.give_up_after_s = give_up_after_s
        self.first_retry_s = first_retry_s
        self.max_retry_s = max_retry_s
        self.timeout = timeout

    def headers(self, message_id: str, body: bytes, when: datetime | None = None) -> dict[str, str]:
        """The Standard Webhooks headers for `body` sent now (or at `when`)."""
        when = when or datetime.now(UTC)
        return {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": self.signer.sign(message_id, when, body),
        }

    def delay(self, retry: int) -> float:
        """The wait before retry `retry` (1, 2, ...): exponential, with jitter."""
        ceiling = min(self.max_retry_s, self.first_retry_s * 2 ** (retry - 1))
        return random.uniform(ceiling / 2, ceiling)

    async def deliver(
        self,
        url: str,
        payload: dict[str, Any],
        *,
        message_id: str | None = None,
        on_attempt: AttemptHook | None = None,
        started_at: float | None = None,
        first_number: int = 1,
    ) -> Delivery:
        """POST `payload` to `url` until it is accepted or the time is up. `started_at` and
        `first_number` resume a delivery another process began (its attempts count)."""
        message_id = message_id or f"msg_{uuid.uuid4().hex}"
        body = json.dumps(payload, separators=(",", ":")).encode()
        started_at = time.time() if started_at is None else started_at
        attempts: list[Attempt] = []
        number = first_number
        async with httpx.AsyncClient(
            timeout=self.timeout, follow_redirects=False, trust_env=False
        ) as client:
            while True:
                attempt = await self._attempt(client, url, message_id, body, number)
                attempts.append(attempt)
                if on_attempt is not None:
                    result = on_attempt(attempt)
                    if asyncio.iscoroutine(result):
                        await result
                if attempt.delivered:
                    return Delivery(message_id, True, attempts)
                if attempt.error is not None and attempt.error.startswith("not allowed"):
                    return Delivery(message_id, False, attempts)
                wait = self.delay(number - first_number + 1)
                if time.time() + wait > started_at + self.give_up_after_s:
                    return Delivery(message_id, False, attempts)
                await asyncio.sleep(wait)
                number += 1

    async def _attempt(
        self, client: httpx.AsyncClient, url: str, message_id: str, body: bytes, number: int
    ) -> Attempt:
        began, clock = time.time(), time.perf_counter()

        def done(**outcome: Any) -> Attempt:
            return Attempt(number, began, time.perf_counter() - clock, **outcome)

        try:
            await asyncio.to_thread(self.policy.check, url)
        except UrlNotAllowed as refused:
            return done(error=f"not allowed: {refused}")
        try:
            response = await client.post(url, content=body, headers=self.headers(message_id, body))
        except httpx.HTTPError as error:
            return done(error=f"{type(error).__name__}: {error}" if str(error) else repr(error))
        return done(status_code=response.status_code)
