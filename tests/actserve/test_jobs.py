"""Jobs from the Python client (`submit_job`, `job.wait()` with progress) and from
`actserve jobs submit|status|wait|results|cancel`, against the service on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from actserve.cli import app
from actserve.client import Client, ConflictError, JobFailed, NotFoundError
from tests.service.conftest import LiveServer
from tests.service.jobs.conftest import jobs_settings
from tests.service.video import media

runner = CliRunner()


@pytest.fixture(scope="module")
def url(store_root, tmp_path_factory) -> Iterator[str]:
    settings = jobs_settings(store_root, tmp_path_factory.mktemp("jobs"), jobs_chunk_views=3)
    with LiveServer(settings) as server:
        yield server.url


def test_submit_and_wait_with_progress(url, videos) -> None:
    seen = []
    with Client(url) as client:
        job = client.submit_job(
            videos["h264.mp4"], features=("labels", "windows", "embeddings"), top_k=2
        )
        results = job.wait(poll_s=0.05, progress=seen.append, timeout=120)
        assert job.status.state == "succeeded"
        assert [c.clip for c in results.clips] == list(range(12))
        assert len(results.windows) == 12 and results.embedding is not None
        assert results.segments is None and len(results.top_k) == 2
        paged = job.results(page_windows=5)  # read back 5 windows at a time: the same
        assert paged.clips == results.clips and paged.windows == results.windows
        assert seen[-1].progress.fraction == 1.0
        done = [s.progress.windows_done for s in seen]
        assert done == sorted(done)
        with pytest.raises(ConflictError):
            job.cancel()
        with pytest.raises(NotFoundError):
            client.job("0" * 32)


def test_a_failed_job_raises_with_the_sync_error(url, tmp_path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)
    with Client(url) as client:
        job = client.submit_job(broken)
        with pytest.raises(JobFailed) as failed:
            job.wait(poll_s=0.05, timeout=120)
    assert failed.value.status.error.status in (415, 422)


def test_the_jobs_commands(url, videos, tmp_path) -> None:
    submitted = runner.invoke(app, ["jobs", "submit", str(videos["h264.mp4"]), "--url", url])
    assert submitted.exit_code == 0, submitted.output
    job_id = submitted.output.strip()
    waited = runner.invoke(app, ["jobs", "wait", job_id, "--url", url, "--json"])
    assert waited.exit_code == 0, waited.output
    answer = json.loads(waited.output)
    assert answer["job_id"] == job_id and answer["segments"] is not None
    status = runner.invoke(app, ["jobs", "status", job_id, "--url", url])
    assert f"{job_id}: succeeded, 12/12 windows (100%)" in status.output
    shown = runner.invoke(app, ["jobs", "results", job_id, "--url", url])
    assert "whole video" in shown.output and "segments" in shown.output
    refused = runner.invoke(app, ["jobs", "cancel", job_id, "--url", url])
    assert refused.exit_code == 1 and "409 conflict" in refused.output

    long = media.write_video(tmp_path / "long.mp4", num_frames=960, size=(64, 48))
    queued = runner.invoke(app, ["jobs", "submit", str(long), "--url", url, "--json"])
    long_id = json.loads(queued.output)["id"]
    cancelled = runner.invoke(app, ["jobs", "cancel", long_id, "--url", url])
    assert cancelled.exit_code == 0 and f"{long_id}: cancelled" in cancelled.output
    gone = runner.invoke(app, ["jobs", "wait", long_id, "--url", url])
    assert gone.exit_code == 1 and "cancelled" in gone.output
