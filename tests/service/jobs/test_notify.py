"""A job's webhook delivery outlives its process: a pending delivery left by a process that
died is resumed by the next one to start, once, numbering its attempts on."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from service.jobs.db import WebhookRow
from service.jobs.notify import STALE_S, JobWebhooks
from service.jobs.queue import JobQueue, NewJob
from service.jobs.settings import JobSettings

SECRET = "whsec_" + base64.b64encode(b"a-webhook-secret-of-24by").decode()


class Accepting(BaseHTTPRequestHandler):
    calls = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        Accepting.calls += 1
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Accepting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def test_a_stale_pending_delivery_is_resumed_once(tmp_path: Path, receiver: str) -> None:
    queue = JobQueue(f"sqlite:///{tmp_path / 'jobs.db'}")
    settings = JobSettings(
        dir=tmp_path, webhook_secret=SECRET, allowed_webhooks=("127.0.0.0/8", "http://127.*")
    )
    job, _ = queue.submit(
        NewJob({"features": ["labels"], "webhook": receiver}, "m", 1, "upload", "x")
    )
    queue.cancel(job.id)
    long_ago = time.time() - STALE_S - 1
    with Session(queue.engine) as session:  # what a process that died after 2 attempts left
        session.add(
            WebhookRow(
                job_id=job.id,
                url=receiver,
                message_id=f"msg_{job.id}",
                state="pending",
                attempts=[{"number": 1}, {"number": 2}],
                created_at=long_ago,
                updated_at=long_ago,
            )
        )
        session.commit()

    async def two_processes_start() -> list[int]:
        first = JobWebhooks(queue, settings, lambda j: {"id": j.id})
        second = JobWebhooks(queue, settings, lambda j: {"id": j.id})
        resumed = [await first.resume(), await second.resume()]
        await asyncio.gather(*first._tasks, *second._tasks)
        return resumed

    Accepting.calls = 0
    settings = settings.model_copy(update={"webhook_retry_s": STALE_S + 60})
    assert asyncio.run(two_processes_start()) == [1, 0]
    status = JobWebhooks(queue, settings, dict).status(job.id)
    assert status is not None and status["state"] == "delivered"
    assert [a["number"] for a in status["attempts"]] == [1, 2, 3]
    assert Accepting.calls == 1
    queue.close()
