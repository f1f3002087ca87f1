"""/jobs through the app: a job's answer equals the sync endpoints', paged and as JSON Lines;
idempotent submits; cancel; listing; bad input and limits."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np
import pytest

from actserve.demo.synthetic import render_sequence, write_video
from tests.service.conftest import LABELS, metric, post_video
from tests.service.jobs.conftest import submit, wait
from tests.service.video import media


def test_a_job_answers_what_classify_answers(jobs_client, videos) -> None:
    video = videos["h264.mp4"]
    response = submit(jobs_client, video, features="labels,segments,windows,embeddings", top_k=3)
    assert response.status_code == 202
    job = response.json()
    assert response.headers["location"] == f"/jobs/{job['id']}"
    assert job["state"] in ("queued", "running")
    done = wait(jobs_client, job["id"])
    assert done["state"] == "succeeded", done
    assert done["progress"] == {
        "windows_done": 12,
        "windows_total": 12,
        "fraction": 1.0,
        "eta_s": None,
    }
    results = jobs_client.get(f"/jobs/{job['id']}/results").json()
    sync = post_video(
        jobs_client, video, per_clip="true", segments="true", top_k=3, embedding="true"
    ).json()
    # A job's video-level labels and embedding are its windows' (every window of the
    # recording), where /classify answers with the profile's own views: the windows' average.
    every_class = post_video(jobs_client, video, per_clip="true", top_k=len(LABELS)).json()
    rows = [{e["index"]: e["score"] for e in c["top_k"]} for c in every_class["clips"]]
    windows_mean = np.mean([[row[k] for k in range(len(LABELS))] for row in rows], axis=0)
    with video.open("rb") as f:
        embedded = jobs_client.post(
            "/embed", params={"per_window": "true"}, files={"video": (video.name, f)}
        ).json()
    windows_embedding = np.mean([w["values"] for w in embedded["windows"]], axis=0)
    assert [c["clip"] for c in results["clips"]] == list(range(12))
    for served, expected in zip(results["clips"], sync["clips"], strict=True):
        assert served["start_s"] == pytest.approx(expected["start_s"])
        assert [e["index"] for e in served["top_k"]] == [e["index"] for e in expected["top_k"]]
        assert [e["score"] for e in served["top_k"]] == pytest.approx(
            [e["score"] for e in expected["top_k"]], rel=1e-5
        )
    best = np.argsort(-windows_mean, kind="stable")[:3]
    assert [e["index"] for e in results["top_k"]] == best.tolist()
    assert [e["score"] for e in results["top_k"]] == pytest.approx(windows_mean[best], rel=1e-5)
    assert results["embedding"]["values"] == pytest.approx(windows_embedding, rel=1e-4, abs=1e-6)
    assert [(s["index"], s["windows"]) for s in results["segments"]] == [
        (s["index"], s["windows"]) for s in sync["segments"]
    ]
    assert results["video"]["views"] == 36  # 12 windows × 3 crops
    # (frames_decoded differs: smaller chunks decode from a keyframe more often)
    assert results["video"]["duration_s"] == sync["video"]["duration_s"]
    assert len(results["windows"]) == 12
    assert results["page"] == {"offset": 0, "limit": 256, "windows": 12, "next_offset": None}

    second = jobs_client.get(f"/jobs/{job['id']}/results", params={"offset": 5, "limit": 4})
    assert [c["clip"] for c in second.json()["clips"]] == [5, 6, 7, 8]
    assert second.json()["page"]["next_offset"] == 9
    assert second.json()["clips"] == results["clips"][5:9]

    lines = jobs_client.get(
        f"/jobs/{job['id']}/results", headers={"Accept": "application/x-ndjson"}
    )
    assert lines.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in lines.text.splitlines()]
    assert rows[0]["kind"] == "summary" and rows[0]["top_k"] == results["top_k"]
    assert [r["window"] for r in rows[1:]] == list(range(12))
    assert [r["top_k"] for r in rows[1:]] == [c["top_k"] for c in results["clips"]]
    # the upload is gone once the job has finished
    assert not list((Path(jobs_client.app.state.jobs.inputs.uploads)).iterdir())


def test_a_job_finds_the_shots_classify_finds_across_its_chunks(jobs_client, tmp_path) -> None:
    """Two motions of 6 s, each cut into three 2 s shots; the job's chunks (6 views each)
    report the cuts of their own stretches, joined as /classify joins its own."""
    path = tmp_path / "edited.mp4"
    frames = render_sequence(
        ["moving right", "shrinking"], seconds_each=6, seed=5, height=72, width=96, shot_s=2
    )
    write_video(frames, str(path))
    job = submit(jobs_client, path, features="labels,segments,shots", top_k=1).json()
    done = wait(jobs_client, job["id"])
    assert done["state"] == "succeeded", done
    results = jobs_client.get(f"/jobs/{job['id']}/results").json()
    sync = post_video(jobs_client, path, shots="true", segments="true", top_k=1).json()
    assert len(results["shots"]) == len(sync["shots"]) == 6
    for served, expected in zip(results["shots"], sync["shots"], strict=True):
        assert (served["start_s"], served["end_s"], served["kind"]) == pytest.approx(
            (expected["start_s"], expected["end_s"], expected["kind"])
        )
        assert served["top_k"][0]["label"] == expected["top_k"][0]["label"]
    assert [(s["label"], s["windows"]) for s in results["segments"]] == [
        (s["label"], s["windows"]) for s in sync["segments"]
    ]  # shot-aware, as /classify's


def test_the_same_idempotency_key_returns_the_same_job(jobs_client, videos) -> None:
    video = videos["h264.mp4"]
    headers = {"Idempotency-Key": "retry-me"}
    with video.open("rb") as f:
        first = jobs_client.post("/jobs", files={"video": f}, headers=headers)
    with video.open("rb") as f:
        again = jobs_client.post("/jobs", files={"video": f}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    listed = jobs_client.get("/jobs", params={"limit": 500}).json()["jobs"]
    assert [j["id"] for j in listed].count(first.json()["id"]) == 1
    wait(jobs_client, first.json()["id"])


def test_unknown_jobs_are_404_and_finished_ones_cannot_be_cancelled(jobs_client, videos):
    assert jobs_client.get("/jobs/nope").status_code == 404
    assert jobs_client.get("/jobs/nope/results").json()["error"] == "job_not_found"
    assert jobs_client.delete("/jobs/nope").status_code == 404
    job = submit(jobs_client, videos["h264.mp4"]).json()
    wait(jobs_client, job["id"])
    refused = jobs_client.delete(f"/jobs/{job['id']}")
    assert refused.status_code == 409 and refused.json()["error"] == "conflict"


def test_a_broken_file_fails_with_the_sync_error(jobs_client, tmp_path, videos) -> None:
    broken = tmp_path / "broken.mp4"
    data = videos["h264.mp4"].read_bytes()
    broken.write_bytes(data[: len(data) // 3])  # the index (moov) is at the end: unreadable
    sync = post_video(jobs_client, broken, per_clip="true")
    job = submit(jobs_client, broken).json()
    done = wait(jobs_client, job["id"])
    assert done["state"] == "failed"
    assert done["error"] == {
        "error": sync.json()["error"],
        "status": sync.status_code,
        "message": sync.json()["message"],
    }
    results = jobs_client.get(f"/jobs/{job['id']}/results")
    assert results.status_code == 409
    assert not list(jobs_client.app.state.jobs.inputs.uploads.iterdir())


def test_limits_are_refused_at_submit(store_root, tmp_path, videos) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from tests.service.jobs.conftest import jobs_settings

    limits = dict(max_duration_s=1.0, max_upload_bytes=20_000)
    settings = jobs_settings(store_root, tmp_path / "jobs", **limits)
    with TestClient(create_app(settings)) as client:
        long = submit(client, videos["h264.mp4"])  # 3.2 s
        assert long.status_code == 422 and long.json()["limit"] == "duration"
        big = tmp_path / "big.mp4"
        big.write_bytes(b"\0" * 30_000)
        assert submit(client, big).status_code == 413
        assert client.get("/jobs").json()["total"] == 0
        assert not list(client.app.state.jobs.inputs.uploads.iterdir())


def test_with_index_jobs_a_succeeded_job_is_searchable(store_root, tmp_path, videos) -> None:
    """ACTSERVE_INDEX_JOBS: a job's windows go into the search index under its id, at the
    times /embed?per_window gives them."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from tests.service.jobs.conftest import jobs_settings

    index = dict(index_jobs=True, index_dir=tmp_path / "index")
    with TestClient(create_app(jobs_settings(store_root, tmp_path / "jobs", **index))) as client:
        video = videos["h264.mp4"]
        done = wait(client, submit(client, video).json()["id"])
        deadline = time.monotonic() + 30
        while done["id"] in client.app.state.jobs.runner.running:  # the hook runs after
            assert time.monotonic() < deadline
            time.sleep(0.02)
        (listed,) = client.get("/index").json()["indexes"]
        assert (listed["videos"], listed["windows"]) == (1, done["progress"]["windows_total"])
        with video.open("rb") as f:
            embedded = client.post(
                "/embed", params={"per_window": "true"}, files={"video": (video.name, f)}
            ).json()["windows"]
        at = embedded[3]["start_s"]
        found = client.post("/search", params={"video_id": done["id"], "at_s": at})
        assert found.status_code == 200, found.text
        assert found.json()["window"] == pytest.approx([at, embedded[3]["end_s"]])


def test_a_running_job_is_cancelled_within_a_chunk(jobs_client, tmp_path) -> None:
    jobs = jobs_client.app.state.jobs
    video = media.write_video(tmp_path / "long.mp4", num_frames=480, size=(64, 48))
    job = submit(jobs_client, video).json()
    deadline = time.monotonic() + 60
    while jobs_client.get(f"/jobs/{job['id']}").json()["progress"]["windows_done"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    cancelled = jobs_client.delete(f"/jobs/{job['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    stopped_at = cancelled.json()["progress"]["windows_done"]
    assert stopped_at < 60
    while job["id"] in jobs.runner.running:  # the runner lets go at once (no heartbeat wait)
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.5)
    after = jobs_client.get(f"/jobs/{job['id']}").json()
    assert after["state"] == "cancelled" and after["progress"]["windows_done"] == stopped_at
    assert len(jobs.queue.chunk_numbers(job["id"])) * 2 == stopped_at  # nothing stored after
    assert jobs.serving.pool.backlog == 0  # its decode was stopped, not left to finish
    assert not jobs.inputs.upload_path(job["id"]).exists()
    assert jobs_client.delete(f"/jobs/{job['id']}").status_code == 409


def test_a_cancel_that_comes_as_a_run_winds_down_stops_nothing(jobs_client, videos) -> None:
    """A cancel that arrives once a run's work has ended (its lease lost on a chunk's store,
    say) must not stop the run's clean-up: its input removal and hooks still happen."""
    jobs = jobs_client.app.state.jobs
    runner, seen = jobs.runner, []

    async def cancel_mid_hook(job) -> None:
        seen.append(runner.interrupt(job.id))  # the run is in its wind-down now
        await asyncio.sleep(0.05)  # a stop landing here would cancel this hook
        seen.append("hook finished")

    runner.on_finished.insert(0, cancel_mid_hook)
    try:
        done = wait(jobs_client, submit(jobs_client, videos["h264.mp4"]).json()["id"])
        deadline = time.monotonic() + 30
        while done["id"] in runner.running:  # the run winds down after the state is written
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        runner.on_finished.remove(cancel_mid_hook)
    assert done["state"] == "succeeded"
    assert seen == [True, "hook finished"]
    assert not jobs.inputs.upload_path(done["id"]).exists()


def test_listing_and_metrics(jobs_client, videos) -> None:
    job = submit(jobs_client, videos["h264.mp4"]).json()
    wait(jobs_client, job["id"])
    listed = jobs_client.get("/jobs", params={"state": "succeeded", "limit": 1}).json()
    assert listed["limit"] == 1 and len(listed["jobs"]) == 1 and listed["total"] >= 1
    assert all(j["state"] == "succeeded" for j in listed["jobs"])
    text = jobs_client.get("/metrics").text
    assert metric(text, "actserve_jobs", state="succeeded") == listed["total"]
    assert metric(text, "actserve_jobs", state="queued") == 0
    assert metric(text, "actserve_job_windows_total") >= 12
    assert metric(text, "actserve_job_duration_seconds_count", state="succeeded") >= 1
    assert "actserve_jobs_queue_age_seconds 0.0" in text


def test_bad_parameters_are_400(jobs_client, videos) -> None:
    assert submit(jobs_client, videos["h264.mp4"], features="labels,colour").status_code == 400
    body = jobs_client.post("/jobs", json={"input": {"uri": "ftp://host/video.mp4"}})
    assert body.status_code == 400 and "no input resolver" in body.json()["message"]
    remote = jobs_client.post("/jobs", json={"input_uri": "s3://bucket/video.mp4"})
    assert remote.status_code == 403 and remote.json()["error"] == "url_not_allowed"
    outside = jobs_client.post("/jobs", json={"input": {"uri": "file:///etc/passwd"}})
    assert outside.status_code == 400
    assert jobs_client.get("/jobs", params={"state": "lost"}).status_code == 400


def test_retention_removes_finished_jobs_and_stray_uploads(jobs_client, videos) -> None:
    import os

    jobs = jobs_client.app.state.jobs
    job = submit(jobs_client, videos["h264.mp4"]).json()
    wait(jobs_client, job["id"])
    stray, fresh = jobs.inputs.uploads / "stray", jobs.inputs.uploads / "fresh"
    stray.write_bytes(b"left by a submit that died")
    fresh.write_bytes(b"a submit under way")
    os.utime(stray, (time.time() - 7200, time.time() - 7200))
    assert jobs.sweep(now=time.time()) == 0  # within retention: kept
    assert jobs_client.get(f"/jobs/{job['id']}").status_code == 200
    assert not stray.exists() and fresh.exists()
    later = time.time() + jobs.settings.retention_s + 1
    assert jobs.sweep(now=later) >= 1
    assert jobs_client.get(f"/jobs/{job['id']}").status_code == 404
    assert jobs.queue.chunk_numbers(job["id"]) == set()
    assert not fresh.exists()  # an hour on, it counts as stray too
