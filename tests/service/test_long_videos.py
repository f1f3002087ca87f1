"""per_clip over long videos: windows streamed through decode and the batcher a chunk at a
time (never all views at once), equal to an unchunked run, and merged into labelled segments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

import service.windows
from actserve.demo.synthetic import render_sequence, write_video
from model_store import ModelStore
from service.app import create_app
from service.scores import softmax
from service.settings import Settings
from service.video import DecodeOptions, VideoLimits, decode_video
from tests.service.conftest import RECIPE, post_video, settings_for
from tests.service.video import media


@pytest.fixture
def watched_client(store_root: Path):
    """The tiny model's app, with the size of every view array its batcher receives."""
    with TestClient(create_app(settings_for(store_root))) as client:
        (loaded,) = client.app.state.engine.models.loaded()
        batcher = loaded.streams[0].batcher
        submitted: list[int] = []
        submit = batcher.submit

        async def counting(views: np.ndarray, *, deadline: float):
            submitted.append(len(views))
            return await submit(views, deadline=deadline)

        batcher.submit = counting
        yield client, submitted


def test_streamed_windows_equal_an_unchunked_run(watched_client, videos, store_root, monkeypatch):
    client, submitted = watched_client
    monkeypatch.setattr(service.windows, "CHUNK_VIEWS", 6)  # 2 windows × 3 crops a chunk
    body = post_video(client, videos["h264.mp4"], per_clip="true", top_k=5).json()
    # 12 windows in 6 chunks, never more at once; and the profile's own 6 views (2 clips × 3
    # crops) that the video-level answer comes from, beside them.
    assert submitted == [6] * 7

    decoded = decode_video(videos["h264.mp4"], RECIPE, DecodeOptions(windows=True), VideoLimits())
    onnx_path = ModelStore(store_root).version_dir("tiny", 1) / "model.onnx"
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"clips": decoded.views})
    probabilities = softmax(logits)
    # The video-level answer (and `video.views`) is the accurate profile's own: 2 clips × 3 crops.
    assert len(body["clips"]) == 12 and body["video"]["views"] == 6
    for number, clip in enumerate(body["clips"]):
        expected = probabilities[decoded.view_clip == number].mean(0)
        served = {entry["index"]: entry["score"] for entry in clip["top_k"]}
        assert list(served) == list(np.argsort(-expected, kind="stable")[:5])
        np.testing.assert_allclose(list(served.values()), np.sort(expected)[::-1][:5], rtol=1e-5)
        assert clip["start_s"] == pytest.approx(decoded.plan.clips[number].start_s)


def test_a_video_past_the_old_window_limit_is_scored_whole(watched_client, tmp_path) -> None:
    """40 s: 150 windows (the limit used to be 64), in chunks of at most CHUNK_VIEWS views."""
    client, submitted = watched_client
    path = media.write_video(tmp_path / "long.mp4", num_frames=1200, size=(64, 48))
    body = post_video(client, path, per_clip="true", top_k=1, profile="fast").json()
    clips = body["clips"]
    span = RECIPE.clip_len * RECIPE.frame_interval / 30
    assert len(clips) == 1200 // (RECIPE.clip_len * RECIPE.frame_interval) == 150
    assert [c["clip"] for c in clips] == list(range(150))
    assert all(c["start_s"] == pytest.approx(i * span, abs=1e-6) for i, c in enumerate(clips))
    assert len(submitted) > 1 and max(submitted) <= service.windows.CHUNK_VIEWS
    # The windows' 150 views, and the fast profile's one view the video-level answer uses.
    assert body["video"]["views"] == 1 and sum(submitted) == 150 + 1


def test_segments_label_a_recording_of_several_actions(tmp_path: Path) -> None:
    """The demo model over 4 s of each of three motions: three segments at the right times."""
    actions = ["moving left", "growing", "rotating clockwise"]
    path = tmp_path / "recording.mp4"
    frames = render_sequence(actions, seconds_each=4, seed=3, height=72, width=96)
    write_video(frames, str(path))
    with TestClient(create_app(Settings(decode_workers=1))) as client:
        body = post_video(client, path, segments="true").json()
        strict = post_video(client, path, segments="true", segment_score=1.0).json()
    assert body["clips"] is None  # segments alone do not list the windows
    segments = [(s["label"], s["start_s"], s["end_s"]) for s in body["segments"]]
    assert [label for label, _, _ in segments] == actions
    for (_, start, end), expected in zip(segments, (0, 4, 8), strict=True):
        assert start == pytest.approx(expected, abs=0.05)
        assert end == pytest.approx(expected + 4, abs=0.05)
    assert all(s["score"] > 0.5 and s["windows"] == 3 for s in body["segments"])
    assert strict["segments"] == []  # no window is that sure


def test_segment_parameters_are_checked(client, videos) -> None:
    response = post_video(client, videos["h264.mp4"], segments="true", segment_score=1.5)
    assert response.status_code == 400 and "segment_score" in response.json()["message"]


def test_shots_are_labelled_and_segments_span_the_shots_of_one_action(tmp_path: Path) -> None:
    """The demo model over two motions of 6 s, each cut into three 2 s shots: six labelled
    shots, and one segment per motion across its shots."""
    actions = ["moving right", "shrinking"]
    path = tmp_path / "edited.mp4"
    frames = render_sequence(actions, seconds_each=6, seed=5, height=72, width=96, shot_s=2)
    write_video(frames, str(path))
    with TestClient(create_app(Settings(decode_workers=1))) as client:
        body = post_video(client, path, shots="true", segments="true", top_k=1).json()
        raw = post_video(
            client, path, segments="true", segment_smooth=1, segment_gap_s=0, segment_min_s=0
        ).json()
    shots = body["shots"]
    assert [s["start_s"] for s in shots] == pytest.approx([0, 2, 4, 6, 8, 10])
    assert [s["end_s"] for s in shots] == pytest.approx([2, 4, 6, 8, 10, 12])
    assert shots[0]["confidence"] is None and all(s["kind"] == "cut" for s in shots[1:])
    assert [s["top_k"][0]["label"] for s in shots] == [actions[0]] * 3 + [actions[1]] * 3
    assert [s["label"] for s in body["segments"]] == actions
    assert body["segments"][0]["start_s"] == 0.0 and body["segments"][-1]["end_s"] > 10
    assert len(raw["segments"]) >= len(body["segments"]) and raw.get("shots") is None
