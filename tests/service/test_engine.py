"""The engine outside FastAPI: what a job worker or a stream reader holds. The same door,
runs and metrics as the HTTP routes, and the same answer for the same file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.engine import Engine, RunOptions, VideoFile
from service.errors import BadRequest, NotReady, UnsupportedCodec
from service.scores import softmax
from tests.service.conftest import RECIPE, metric, post_video, settings_for


def test_run_videos_answers_what_classify_answers(store_root: Path, videos) -> None:
    path = videos["h264.mp4"]

    async def scenario():
        async with Engine(settings_for(store_root)) as engine:
            assert engine.ready and not engine.draining
            loaded = engine.resolve()
            with engine.admit(loaded, "job-7") as ticket:
                ticket.received()
                (run,) = await engine.run_videos(
                    loaded,
                    [VideoFile(path, "a", bytes=123, upload_s=0.5)],
                    RunOptions(client="job-7"),
                    deadline=engine.deadline(),
                )
            return run, engine.metrics.render().decode()

    run, metrics = asyncio.run(scenario())
    assert run.outputs.logits.shape == (6, 5) and run.decoded.num_views == 6
    assert run.stages.views == 6 and run.stages.upload_bytes == 123
    assert run.stages.upload_s == 0.5 and run.stages.total_s > 0 and run.stages.streams == ()
    assert metric(metrics, "actserve_upload_bytes_total") == 123
    assert metric(metrics, "actserve_request_views_count", model="tiny", version="1") == 1

    with TestClient(create_app(settings_for(store_root))) as client:
        served = post_video(client, path, top_k=5).json()
    scores = softmax(run.outputs.logits).mean(0)
    for entry in served["top_k"]:
        assert entry["score"] == pytest.approx(scores[entry["index"]], abs=1e-6)


def test_the_first_failure_names_its_video_and_cancels_the_rest(store_root, videos) -> None:
    async def scenario():
        async with Engine(settings_for(store_root, video_codecs="mpeg4")) as engine:
            loaded = engine.resolve("tiny", 1)
            with loaded.lease(), pytest.raises(UnsupportedCodec) as refused:
                await engine.run_videos(
                    loaded,
                    [videos["mpeg4.avi"], VideoFile(videos["h264.mp4"], "b")],
                    RunOptions(profile="fast"),
                    deadline=engine.deadline(),
                )
            return str(refused.value), engine.pool.backlog

    message, backlog = asyncio.run(scenario())
    assert message.startswith("video 'b': ") and backlog == 0


def test_tensors_pass_the_same_door_and_the_drain_closes_it(store_root) -> None:
    async def scenario():
        async with Engine(settings_for(store_root)) as engine:
            loaded = engine.resolve()
            clips = np.zeros((3, *RECIPE.clip_shape), np.float32)
            with engine.admit(loaded, tensors=True) as ticket:
                assert engine.admission.upstream == 1  # its body is on its way
                ticket.received()
                outputs = await engine.run_tensors(loaded, clips, deadline=engine.deadline())
            engine.drain()
            assert not engine.ready and engine.draining
            with pytest.raises(NotReady), engine.admit(loaded, tensors=True):
                pass
            return outputs, engine.metrics.render().decode()

    outputs, metrics = asyncio.run(scenario())
    assert outputs.logits.shape == (3, 5) and outputs.embedding.shape[0] == 3
    assert metric(metrics, "actserve_request_views_sum", model="tiny", version="1") == 3


def test_start_with_named_versions_serves_only_those(store_root) -> None:
    async def scenario():
        engine = Engine(settings_for(store_root))
        await engine.start(["tiny@1"])
        try:
            return [m.key for m in engine.models.loaded()], engine.resolve("tiny", 1).key
        finally:
            await engine.close()

    loaded, resolved = asyncio.run(scenario())
    assert resolved == "tiny@1" and "tiny@1" in loaded


def test_a_missing_store_is_refused_before_anything_starts(tmp_path) -> None:
    with pytest.raises(RuntimeError, match="no model store"):
        Engine(settings_for(tmp_path / "nowhere"))


def test_two_stream_versions_take_no_tensors(store_root) -> None:
    """`run_tensors` serves one-network versions (the /v2 route says so first)."""

    class TwoStreams:
        key, streams = "pair@1", (object(), object())

    with pytest.raises(BadRequest, match="two-stream"):
        asyncio.run(
            Engine(settings_for(store_root)).run_tensors(
                TwoStreams(),  # type: ignore[arg-type]
                np.zeros((1, *RECIPE.clip_shape), np.float32),
                deadline=0.0,
            )
        )


def test_the_settings_reference_lists_every_setting_once() -> None:
    from service.settings import Settings

    rows = Settings.reference()
    names = [row.env for row in rows]
    assert len(names) == len(set(names)) and set(names) == Settings.env_names()
    assert all(row.description for row in rows), [r.env for r in rows if not r.description]
    pixels = next(row for row in rows if row.env == "ACTSERVE_MAX_PIXELS")
    assert (pixels.group, pixels.field, pixels.type, pixels.default) == (
        "video",
        "max_pixels",
        "int",
        3840 * 2160,
    )


def test_every_route_documents_its_statuses_from_the_error_table(client) -> None:
    """The OpenAPI status rows are the errors' own statuses and docstrings (errors.STATUS)."""
    from service.errors import NotAVideo, Overloaded, status_for

    paths = client.get("/openapi.json").json()["paths"]
    classify = paths["/classify"]["post"]["responses"]
    assert str(status_for(NotAVideo("x"))) == "415"
    assert NotAVideo.__doc__.split(":")[0] in classify["415"]["description"]
    assert classify["429"]["description"].startswith(Overloaded.__doc__.split(":")[0])
    infer = paths["/v2/models/{name}/infer"]["post"]["responses"]
    assert infer["429"]["content"]["application/json"]["schema"]["$ref"].endswith("InferenceError")
