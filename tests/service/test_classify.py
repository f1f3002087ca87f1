"""POST /classify through ASGI: real generated videos, every profile and option, numbers
checked against an independent decode + ONNX Runtime run, and every error path."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from model_store import ModelStore
from service.scores import softmax
from service.video import DecodeOptions, VideoLimits, decode_video
from tests.service.conftest import LABELS, RECIPE, metric, post_video

#: The intake's default limits, passed explicitly as the service passes its own.
LIMITS = VideoLimits()


@pytest.mark.parametrize("name", ["h264.mp4", "vp9.webm", "mjpeg.avi", "h264.mkv", "vfr.mp4"])
def test_classify_generated_videos(client, videos, name: str) -> None:
    response = post_video(client, videos[name], top_k=3)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "tiny" and body["version"] == 1 and body["profile"] == "accurate"
    assert response.headers["x-request-id"] == body["request_id"]
    scores = [entry["score"] for entry in body["top_k"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True) and sum(scores) <= 1
    assert {entry["label"] for entry in body["top_k"]} <= set(LABELS)
    video = body["video"]
    assert (video["width"], video["height"]) == (64, 48)
    assert video["views"] == RECIPE.num_clips * RECIPE.num_crops and video["clips"] == 2
    assert 8 <= video["frames_decoded"] <= 96  # targets, plus frames decoded to reach them
    timings = body["timings"]
    stages = ("upload_ms", "decode_wait_ms", "decode_ms", "queue_ms", "inference_ms")
    assert all(timings[k] >= 0 for k in stages)
    assert timings["total_ms"] >= timings["decode_ms"] + timings["inference_ms"]
    assert body["embedding"] is None and body["clips"] is None


def test_scores_equal_an_independent_decode_and_onnx_run(client, videos, store_root) -> None:
    """The service's answer is the softmax, averaged over the recipe's views, of the stored
    artifact run on the decoded views: nothing reordered, dropped or mixed up."""
    path = videos["h264.mp4"]
    body = post_video(client, path, top_k=5, embedding="true").json()
    decoded = decode_video(path, RECIPE, DecodeOptions(profile="accurate"), LIMITS)
    onnx_path = ModelStore(store_root).version_dir("tiny", 1) / "model.onnx"
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits, embedding = session.run(None, {"clips": decoded.views})
    expected = softmax(logits).mean(0)
    served = {entry["index"]: entry["score"] for entry in body["top_k"]}
    assert list(served) == list(np.argsort(-expected, kind="stable")[:5])
    np.testing.assert_allclose(list(served.values()), np.sort(expected)[::-1][:5], rtol=1e-5)
    assert body["embedding"]["dim"] == 512
    np.testing.assert_allclose(body["embedding"]["values"], embedding.mean(0), rtol=1e-4, atol=1e-6)


def test_fast_profile_is_one_clip_and_the_centre_crop(client, videos) -> None:
    body = post_video(client, videos["h264.mp4"], profile="fast").json()
    assert body["profile"] == "fast"
    assert (body["video"]["clips"], body["video"]["views"]) == (1, 1)


def test_fast_clips_start_on_a_keyframe_and_say_so(client, videos) -> None:
    """textured.mp4 has keyframes at frames 0, 50 and 100 of 120: the centred clip (7 frames
    from frame 56) moves to frame 50 and decodes its own frames, not the GOP before it."""
    fast = post_video(client, videos["textured.mp4"], profile="fast").json()["video"]
    assert fast["keyframe_snap_s"] == pytest.approx(-6 / 30)
    assert fast["frames_decoded"] <= (RECIPE.clip_len - 1) * RECIPE.frame_interval + 1
    accurate = post_video(client, videos["textured.mp4"]).json()["video"]
    assert accurate["keyframe_snap_s"] is None


def test_raw_video_body_is_accepted(client, videos) -> None:
    data = videos["vp9.webm"].read_bytes()
    response = client.post("/classify", content=data, headers={"Content-Type": "video/webm"})
    assert response.status_code == 200, response.text
    assert response.json()["video"]["codec"] == "vp9"


@pytest.mark.parametrize("profile", ["fast", "accurate"])
def test_per_clip_and_segments_do_not_change_the_video_level_answer(client, videos, profile):
    """Asking for more detail must not change the main answer: the windows are extra."""
    plain = post_video(client, videos["h264.mp4"], profile=profile, embedding="true").json()
    for detail in ({"per_clip": "true"}, {"segments": "true"}):
        detailed = post_video(
            client, videos["h264.mp4"], profile=profile, embedding="true", **detail
        ).json()
        assert detailed["video"]["views"] == plain["video"]["views"], detail
        assert [e["label"] for e in detailed["top_k"]] == [e["label"] for e in plain["top_k"]]
        assert [e["score"] for e in detailed["top_k"]] == pytest.approx(
            [e["score"] for e in plain["top_k"]], rel=1e-5, abs=1e-7
        )
        assert detailed["embedding"]["values"] == pytest.approx(
            plain["embedding"]["values"], rel=1e-5, abs=1e-6
        )


def test_per_clip_scores_cover_the_video_in_order(client, videos) -> None:
    body = post_video(client, videos["h264.mp4"], per_clip="true", top_k=2).json()
    clips = body["clips"]
    span = RECIPE.clip_len * RECIPE.frame_interval / 30  # seconds per window at 30 fps
    assert len(clips) == 96 // (RECIPE.clip_len * RECIPE.frame_interval)
    for number, clip in enumerate(clips):
        assert clip["clip"] == number and len(clip["top_k"]) == 2
        assert clip["start_s"] == pytest.approx(number * span, abs=1e-6)
        assert clip["end_s"] == pytest.approx((number + 1) * span, abs=1e-6)


def test_version_and_alias_select_what_runs(client, videos) -> None:
    by_version = post_video(client, videos["h264.mp4"], version=1).json()
    by_alias = post_video(client, videos["h264.mp4"], alias="stable").json()
    assert by_version["version"] == by_alias["version"] == 1
    assert by_version["top_k"] == by_alias["top_k"]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("random.bin", 415, "not_a_video"),
        ("image.png", 415, "not_a_video"),
        ("audio.mp4", 415, "audio_only"),
        ("stream.ts", 415, "container_not_allowed"),
        ("mpeg2.mkv", 415, "unsupported_codec"),
        ("no_moov.mp4", 422, "corrupt_video"),
        ("blank.avi", 422, "corrupt_video"),
        ("bomb.avi", 422, "limit_exceeded"),
    ],
)
def test_bad_videos_get_a_4xx_that_says_why(client, videos, name, status, code) -> None:
    response = post_video(client, videos[name])
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code and body["message"] and body["request_id"]


def test_a_truncated_file_is_classified_over_its_frames_with_a_warning(client, videos) -> None:
    response = post_video(client, videos["faststart_cut.mp4"])
    assert response.status_code == 200, response.text
    warnings = response.json()["video"]["warnings"]
    assert any(w.startswith("truncated") for w in warnings)
    intact = post_video(client, videos["faststart.mp4"]).json()
    assert intact["video"]["warnings"] == []


def test_limit_errors_name_the_limit(client, videos) -> None:
    body = post_video(client, videos["bomb.avi"]).json()
    assert body["limit"] == "pixels" and body["value"] > body["maximum"]


@pytest.mark.parametrize(
    ("params", "status", "code", "message"),
    [
        ({"top_k": 0}, 400, "bad_request", "top_k"),
        ({"top_k": 101}, 400, "bad_request", "ACTSERVE_MAX_TOP_K"),
        ({"profile": "slow"}, 400, "bad_request", "profile"),
        ({"model": "nope"}, 404, "model_not_found", "does not exist"),
        ({"version": 7}, 404, "model_not_found", "version 7"),
        ({"alias": "canary"}, 404, "model_not_found", "no alias 'canary'"),
        ({"version": 1, "alias": "stable"}, 400, "bad_request", "not both"),
    ],
)
def test_bad_parameters(client, videos, params, status, code, message) -> None:
    response = post_video(client, videos["h264.mp4"], **params)
    assert response.status_code == status, response.text
    assert response.json()["error"] == code and message in response.json()["message"]


def test_uploads_that_are_not_videos(client, videos) -> None:
    text = client.post("/classify", content=b"hello", headers={"Content-Type": "text/plain"})
    assert text.status_code == 415 and text.json()["error"] == "unsupported_media_type"
    with videos["h264.mp4"].open("rb") as f:
        wrong_field = client.post("/classify", files={"clip": ("a.mp4", f, "video/mp4")})
    assert wrong_field.status_code == 400 and "'video' file field" in wrong_field.json()["message"]
    empty = client.post("/classify", content=b"", headers={"Content-Type": "video/mp4"})
    assert empty.status_code == 400 and "empty" in empty.json()["message"]
    broken = client.post(
        "/classify",
        content=b"--xyz\r\nContent-Disposition: garbage\r\n\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert broken.status_code == 400, broken.text
    garbage = client.post(
        "/classify",
        content=b"--xyz\r\n" + b"\xff" * 5000 + b"\r\n--xyz",
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert garbage.status_code == 400 and garbage.json()["error"] == "bad_request", garbage.text


def test_a_request_with_windows_is_one_request_in_the_metrics(client, videos) -> None:
    """per_clip runs the profile's views and the windows on one upload: the metrics count
    one request, one upload and both runs' frames."""

    def count(name: str) -> float:
        return metric(client.get("/metrics").text, name, model="tiny", version="1")

    before = count("actserve_request_duration_seconds_count")
    uploads = metric(client.get("/metrics").text, "actserve_upload_duration_seconds_count")
    body = post_video(client, videos["h264.mp4"], per_clip="true", profile="fast").json()
    assert count("actserve_request_duration_seconds_count") == before + 1
    after = metric(client.get("/metrics").text, "actserve_upload_duration_seconds_count")
    assert after == uploads + 1 and body["clips"]
