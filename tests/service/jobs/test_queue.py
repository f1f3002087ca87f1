"""The durable queue on SQLite and on a real PostgreSQL: one claim per job however many
claim at once, leases that lapse and are taken over, writes refused to a process that lost
its lease, idempotent submits, and the attempts bound."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from service.errors import Conflict, JobNotFound
from service.jobs.queue import Chunk, JobQueue, JobState, NewJob


def new_job(**overrides) -> NewJob:
    fields = dict(
        request={"features": ["labels"], "profile": None, "top_k": 5, "segment_score": 0.5},
        model="tiny",
        version=1,
        input_kind="upload",
        input_ref="x",
        input_bytes=10,
    )
    return NewJob(**{**fields, **overrides})


def chunk(number: int) -> Chunk:
    return Chunk(number, number * 2, number * 2 + 2, b"l", b"e", b"v", 4, [], {})


@pytest.fixture
def queue(database_url: str):
    queue = JobQueue(database_url, lease_s=30)
    yield queue
    queue.close()


def test_each_job_is_claimed_once_however_many_claim_at_once(queue: JobQueue) -> None:
    ids = {queue.submit(new_job())[0].id for _ in range(12)}
    with ThreadPoolExecutor(8) as threads:
        claims = list(threads.map(lambda n: queue.claim(f"worker-{n % 8}"), range(24)))
    taken = [job.id for job in claims if job is not None]
    assert sorted(taken) == sorted(ids)  # every job once, none twice
    assert queue.counts()[JobState.RUNNING] == 12
    assert queue.claim("late") is None


def test_a_lapsed_lease_is_taken_over_and_the_old_owner_is_refused(database_url) -> None:
    queue = JobQueue(database_url, lease_s=1)
    try:
        job, _ = queue.submit(new_job())
        assert queue.claim("a").id == job.id
        assert queue.add_chunk(job.id, "a", chunk(0))
        assert queue.claim("b") is None  # the lease holds
        time.sleep(1.2)  # "a" died: no heartbeat
        taken = queue.claim("b")
        assert taken.id == job.id and taken.attempts == 2 and taken.windows_done == 2
        assert taken.run_windows_from == 2
        assert not queue.heartbeat(job.id, "a")
        assert not queue.add_chunk(job.id, "a", chunk(1))  # a stalled "a" writes nothing
        assert not queue.add_chunk(job.id, "b", chunk(0))  # stored once, never twice
        assert queue.add_chunk(job.id, "b", chunk(1))
        assert queue.chunk_numbers(job.id) == {0, 1}
        assert queue.get(job.id).windows_done == 4
        assert queue.finish(job.id, "b", JobState.SUCCEEDED, summary={"ok": 1})
        assert not queue.finish(job.id, "a", JobState.FAILED)
    finally:
        queue.close()


def test_cancel_ends_the_lease_and_is_refused_once_finished(queue: JobQueue) -> None:
    job, _ = queue.submit(new_job())
    queue.claim("a")
    assert queue.cancel(job.id).state == JobState.CANCELLED
    assert not queue.heartbeat(job.id, "a")  # the runner stops at its next beat
    with pytest.raises(Conflict):
        queue.cancel(job.id)
    with pytest.raises(JobNotFound):
        queue.cancel("missing")


def test_an_idempotency_key_makes_one_job(queue: JobQueue) -> None:
    first, created = queue.submit(new_job(idempotency_key="k"))
    again, created_again = queue.submit(new_job(idempotency_key="k"))
    assert created and not created_again and again.id == first.id
    assert queue.list()[1] == 1


def test_a_job_taken_too_often_fails_as_abandoned(database_url) -> None:
    queue = JobQueue(database_url, lease_s=1, max_attempts=2)
    try:
        job, _ = queue.submit(new_job())
        for owner in ("a", "b"):
            assert queue.claim(owner) is not None
            queue.release(job.id, owner, {"error": "decoder_crashed", "status": 503, "message": ""})
        assert queue.claim("c") is None
        failed = queue.get(job.id)
        assert failed.state == JobState.FAILED and failed.error["error"] == "job_abandoned"
    finally:
        queue.close()


def test_listing_filters_by_state_and_pages(queue: JobQueue) -> None:
    for _ in range(5):
        queue.submit(new_job())
        time.sleep(0.002)
    queue.claim("a")
    page, total = queue.list(JobState.QUEUED, offset=1, limit=2)
    assert total == 4 and len(page) == 2
    assert all(j.state == JobState.QUEUED for j in page)
    assert page[0].created_at > page[1].created_at  # newest first


def test_a_database_made_before_a_new_column_gains_it_and_keeps_its_jobs(database_url) -> None:
    from sqlalchemy import text

    queue = JobQueue(database_url, lease_s=30)
    job, _ = queue.submit(new_job())
    with queue.engine.begin() as connection:  # as 0.1 made it: no `shots` column
        connection.execute(text("ALTER TABLE actserve_job_chunks DROP COLUMN shots"))
    queue.close()
    upgraded = JobQueue(database_url, lease_s=30)
    try:
        assert upgraded.get(job.id).state == JobState.QUEUED
        claimed = upgraded.claim("me")
        assert claimed is not None and claimed.id == job.id
        stored = Chunk(0, 0, 2, b"l", b"e", b"v", 4, [], {}, shots=[{"time_s": 1.0}])
        assert upgraded.add_chunk(job.id, "me", stored)
        assert next(upgraded.chunks(job.id)).shots == [{"time_s": 1.0}]
    finally:
        upgraded.close()
