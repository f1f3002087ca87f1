"""Crash safety with real processes: `actserve worker` killed with SIGKILL again and again
mid-job; each restart resumes at the first chunk not stored, and the final results equal an
uninterrupted run's, nothing lost and nothing duplicated. And two workers sharing a real
PostgreSQL queue run every job exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from service.jobs.db import from_bytes
from service.jobs.queue import Job, JobQueue, JobState, NewJob
from tests.service.video import media

pytestmark = pytest.mark.slow

LEASE_S = 1.5


def start_worker(store: Path, jobs_dir: Path, url: str, *extra: str) -> subprocess.Popen:
    settings = {
        "jobs_dir": jobs_dir,
        "jobs_database_url": url,
        "jobs_input_dirs": jobs_dir.parent,
        "jobs_lease_s": LEASE_S,
        "jobs_poll_s": 0.1,
        "jobs_chunk_views": 6,
        "decode_workers": 1,
    }
    command = [sys.executable, "-m", "actserve", "worker", "--store", str(store)]
    command += [f"--set={k}={v}" for k, v in settings.items()]
    return subprocess.Popen(
        [*command, *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # SIGKILL reaches its decode workers with it (the group)
    )


def kill(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def wait_for(condition, timeout: float = 120.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def submit(queue: JobQueue, video: Path) -> Job:
    request = {"features": ["labels", "segments", "windows", "embeddings"], "profile": None}
    request |= {"top_k": 5, "segment_score": 0.5}
    job, _ = queue.submit(NewJob(request, "tiny", 1, "file", video.as_uri(), idempotency_key=None))
    return job


def outputs(queue: JobQueue, job_id: str) -> tuple[np.ndarray, np.ndarray, list[int]]:
    chunks = list(queue.chunks(job_id))
    logits = np.concatenate([from_bytes(c.logits) for c in chunks])
    embedding = np.concatenate([from_bytes(c.embedding) for c in chunks])
    return logits, embedding, [c.number for c in chunks]


def test_a_job_killed_again_and_again_ends_as_an_uninterrupted_run(store_root, tmp_path):
    video = media.write_video(tmp_path / "long.mp4", num_frames=480, size=(64, 48))  # 60 windows
    jobs_dir, url = tmp_path / "jobs", f"sqlite:///{tmp_path / 'jobs.db'}"
    queue = JobQueue(url, lease_s=LEASE_S, max_attempts=10)
    try:
        job = submit(queue, video)
        marks = []
        for _ in range(3):  # run a little further each time, then SIGKILL
            worker = start_worker(store_root, jobs_dir, url)
            try:
                before = queue.get(job.id).windows_done
                wait_for(
                    lambda b=before: queue.get(job.id).windows_done >= b + 6,
                    what="a worker to store chunks",
                )
            finally:
                kill(worker)
            marks.append(queue.get(job.id).windows_done)
        assert marks == sorted(marks) and marks[-1] < 60, marks  # killed mid-job each time
        reference = submit(queue, video)
        worker = start_worker(store_root, jobs_dir, url)
        try:
            for each in (job, reference):
                wait_for(lambda j=each: queue.get(j.id).state.finished, what="the jobs to finish")
        finally:
            worker.terminate()
            worker.wait(timeout=60)
        resumed, uninterrupted = queue.get(job.id), queue.get(reference.id)
        assert resumed.state == uninterrupted.state == JobState.SUCCEEDED
        assert resumed.attempts == 4 and uninterrupted.attempts == 1
        assert resumed.windows_done == resumed.windows_total == 60  # nothing counted twice
        logits, embedding, numbers = outputs(queue, job.id)
        expected_logits, expected_embedding, expected_numbers = outputs(queue, reference.id)
        assert numbers == expected_numbers == list(range(30))  # every chunk once
        np.testing.assert_array_equal(logits, expected_logits)
        np.testing.assert_array_equal(embedding, expected_embedding)
        assert resumed.summary == uninterrupted.summary
    finally:
        queue.close()


def test_two_workers_share_a_postgresql_queue(store_root, tmp_path, postgres_url) -> None:
    from tests.service.jobs.conftest import fresh_database

    url = fresh_database(postgres_url, "shared_queue")
    jobs_dir = tmp_path / "jobs"
    videos = [
        media.write_video(tmp_path / f"v{n}.mp4", num_frames=96 + 16 * n, size=(64, 48))
        for n in range(4)
    ]
    queue = JobQueue(url, lease_s=LEASE_S)
    workers = [start_worker(store_root, jobs_dir, url) for _ in range(2)]
    try:
        jobs = [submit(queue, video) for video in videos]
        for job in jobs:
            wait_for(lambda j=job: queue.get(j.id).state.finished, what="the jobs to finish")
        finished = [queue.get(job.id) for job in jobs]
        assert all(j.state == JobState.SUCCEEDED and j.attempts == 1 for j in finished)
        assert all(j.windows_done == j.windows_total for j in finished)
        assert len({j.owner for j in finished}) == 2  # both workers took work
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=60)
        queue.close()
