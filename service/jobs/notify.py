"""A job's webhook: once the job has finished (succeeded, failed or cancelled), its status is
POSTed, signed, to the URL it named (service/webhooks.py does the signing and retrying), and
every attempt is stored with the job for GET /jobs/{id} to show.

    webhooks = JobWebhooks(queue, settings)
    webhooks.check(url)                  # at submit: a secret is set, the URL is allowed
    runner.on_finished.append(webhooks.finished)
    await webhooks.resume()              # at start: deliveries a dead process left pending

The message is `{"type": "job.succeeded" | "job.failed" | "job.cancelled", "timestamp",
"data": <the job's status>}` with `webhook-id` = `msg_<job id>`, the same on every attempt
and every process, so a receiver deduplicates the (at-least-once) deliveries. A job's
delivery row is created once (its key is the job), so two processes that see the same job
finish (a cancel here while another ran it) deliver it once. A process that dies mid-way
leaves its row pending; one that starts later resumes it after `STALE_S`, within the same
`webhook_retry_s` budget, counted from the job's end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from service.errors import BadRequest
from service.jobs.db import WebhookRow
from service.jobs.queue import Job, JobQueue
from service.jobs.settings import JobSettings
from service.net_policy import UrlPolicy, redact
from service.webhooks import Attempt, WebhookSender

logger = logging.getLogger("actserve.jobs")

#: A pending delivery not written to for this long lost its process (the longest wait
#: between attempts is the sender's max_retry_s, 300 s).
STALE_S = 900.0


class JobWebhooks:
    def __init__(
        self,
        queue: JobQueue,
        settings: JobSettings,
        describe: Callable[[Job], dict[str, Any]],
        *,
        first_retry_s: float = 1.0,
    ) -> None:
        self.queue = queue
        self.settings = settings
        self.describe = describe
        self.policy = UrlPolicy.parse(
            settings.allowed_webhooks,
            schemes={"https", "http"},
            setting="ACTSERVE_JOBS_ALLOWED_WEBHOOKS",
        )
        secret = settings.webhook_secret
        self.sender = (
            WebhookSender(
                secret.get_secret_value(),
                self.policy,
                give_up_after_s=settings.webhook_retry_s,
                first_retry_s=first_retry_s,
            )
            if secret is not None
            else None
        )
        self._sessions = sessionmaker(queue.engine, expire_on_commit=False)
        self._tasks: set[asyncio.Task[None]] = set()

    def check(self, url: str) -> str:
        """At submit: webhooks are on and `url` passes the allow-list and SSRF rules; `http://`
        only where a pattern names it."""
        if self.sender is None:
            raise BadRequest("jobs take no webhooks here: ACTSERVE_WEBHOOK_SECRET is unset")
        if url.lower().startswith("http://") and not any(
            p.startswith("http://") for p in self.policy.patterns
        ):
            raise BadRequest(f"webhook {redact(url)}: use https (or list an http:// pattern)")
        self.policy.check(url)
        return url

    def status(self, job_id: str) -> dict[str, Any] | None:
        with self._sessions() as session:
            row = session.get(WebhookRow, job_id)
            if row is None:
                return None
            return {
                "url": redact(row.url),
                "message_id": row.message_id,
                "state": row.state,
                "attempts": list(row.attempts),
            }

    async def finished(self, job: Job) -> None:
        """The runner's (and cancel's) hook: start delivering `job`'s webhook, once."""
        url = job.request.get("webhook")
        if not url or self.sender is None:
            return
        now = time.time()
        if await asyncio.to_thread(self._create, job.id, url, now):
            self._spawn(job, url, now, first_number=1)

    def _create(self, job_id: str, url: str, now: float) -> bool:
        with self._sessions() as session:
            session.add(
                WebhookRow(
                    job_id=job_id,
                    url=url,
                    message_id=f"msg_{job_id}",
                    state="pending",
                    attempts=[],
                    created_at=now,
                    updated_at=now,
                )
            )
            try:
                session.commit()
            except IntegrityError:  # already delivered, or being delivered
                return False
            return True

    async def resume(self) -> int:
        """Take over the deliveries a dead process left pending; how many."""
        taken = await asyncio.to_thread(self._take_stale)
        for job_id, url, created_at, attempts in taken:
            job = await asyncio.to_thread(self.queue.get, job_id)
            self._spawn(job, url, created_at, first_number=attempts + 1)
        return len(taken)

    def _take_stale(self) -> list[tuple[str, str, float, int]]:
        stale = time.time() - STALE_S
        with self._sessions() as session:
            pending = (WebhookRow.state == "pending", WebhookRow.updated_at < stale)
            rows = session.scalars(select(WebhookRow).where(*pending)).all()
        taken = []
        for row in rows:
            with self._sessions() as session:  # compare-and-set: one process takes it
                result = session.execute(
                    update(WebhookRow)
                    .where(WebhookRow.job_id == row.job_id, WebhookRow.updated_at == row.updated_at)
                    .values(updated_at=time.time())
                )
                session.commit()
            if result.rowcount == 1:
                taken.append((row.job_id, row.url, row.created_at, len(row.attempts)))
        return taken

    async def close(self) -> None:
        """Stop delivering (rows stay pending for `resume`)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, job: Job, url: str, started_at: float, *, first_number: int) -> None:
        task = asyncio.get_running_loop().create_task(
            self._deliver(job, url, started_at, first_number), name=f"actserve-webhook-{job.id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, job: Job, url: str, started_at: float, first_number: int) -> None:
        assert self.sender is not None
        payload = {
            "type": f"job.{job.state.value}",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(job.finished_at)),
            "data": self.describe(job),
        }
        try:
            delivery = await self.sender.deliver(
                url,
                payload,
                message_id=f"msg_{job.id}",
                on_attempt=lambda attempt: asyncio.to_thread(self._record, job.id, attempt),
                started_at=started_at,
                first_number=first_number,
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("job %s: its webhook delivery failed", job.id)
            await asyncio.to_thread(self._end, job.id, "failed")
            return
        state = "delivered" if delivery.delivered else "failed"
        await asyncio.to_thread(self._end, job.id, state)
        logger.info("job %s: webhook %s after %d attempt(s)", job.id, state, len(delivery.attempts))

    def _record(self, job_id: str, attempt: Attempt) -> None:
        with self._sessions() as session:
            row = session.get(WebhookRow, job_id)
            if row is None:  # the job was deleted meanwhile
                return
            row.attempts = [*row.attempts, asdict(attempt)]
            row.updated_at = time.time()
            session.commit()

    def _end(self, job_id: str, state: str) -> None:
        with self._sessions() as session:
            session.execute(
                update(WebhookRow)
                .where(WebhookRow.job_id == job_id)
                .values(state=state, updated_at=time.time())
            )
            session.commit()
