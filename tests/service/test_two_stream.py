"""A two-stream version served end to end on a real uvicorn: one decode makes RGB and TV-L1
flow views, each stream runs on its own runtime, the answer is their weighted softmax mean,
and known motion comes out as its direction.

The flow stream is a probe, not a trained net: a `VideoClassifier` whose embedding is the mean
of each flow channel (x and y, already centred on 128 by the recipe) and whose head scores
"moving right/left/down/up" as ±x, ±y. It is exported, parity-checked and served like any
network, so the direction it reports is computed by the service from the video's motion.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from actserve.cli import app
from backbones import VideoClassifier, create_model
from exporters import Stream, export_two_stream_to_store
from model_store import ModelSpec, ModelStore, Recipe
from service.embedded import EmbeddedServer
from service.errors import ModelLoadError, VersionBroken
from service.scores import softmax
from service.video import DecodeOptions, VideoLimits, sample_streams
from service.video import flow as flow_module
from service.video.job import assemble_views
from tests.service.conftest import metric, post_video, settings_for

DIRECTIONS = ("moving right", "moving left", "moving down", "moving up")
#: Both streams sample the same 2 clips of 4 frames, 2 apart: their views pair up.
RGB = Recipe(
    clip_len=4,
    frame_interval=2,
    num_clips=2,
    num_crops=1,
    short_side=80,
    crop_size=64,
    pixel_scale=1.0,
    mean=(0.45, 0.45, 0.45),
    std=(0.225, 0.225, 0.225),
)
FLOW = RGB.as_flow()
WEIGHTS = (1.0, 1.5)


class MotionProbe(VideoClassifier):
    """Mean x and y flow (grey levels minus 128) → direction scores."""

    def __init__(self) -> None:
        super().__init__(in_channels=2, embedding_dim=2, num_classes=4)
        self.head = nn.Linear(2, 4)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0, 0], [-1, 0], [0, 1], [0, -1]]))
            self.head.bias.zero_()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3, 4))


@pytest.fixture(scope="module")
def two_stream_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    rgb = create_model("r3d_10", num_classes=4, recipe=RGB).eval()
    probe = MotionProbe().eval()
    probe_spec = ModelSpec(
        backbone="motion_probe", recipe=FLOW, num_classes=4, embedding_dim=2, labels=DIRECTIONS
    )
    root = tmp_path_factory.mktemp("two-stream-store")
    export_two_stream_to_store(
        Stream(rgb, rgb.spec.relabel(DIRECTIONS), trained=False),
        Stream(probe, probe_spec, trained=False),
        ModelStore(root),
        weights=WEIGHTS,
        name="two",
        alias="stable",
    )
    return root


def _expected_probabilities(store: Path, video: Path, options: DecodeOptions) -> np.ndarray:
    """The fused answer computed beside the service: the same decode, each stream's ONNX file
    on onnxruntime, the manifest's weights."""
    manifest = ModelStore(store).resolve("two")
    directory = ModelStore(store).version_dir("two", manifest.version)
    sampled = sample_streams(video, (RGB, FLOW), options, VideoLimits())
    probabilities = []
    for stream, recipe in zip(sampled, (RGB, FLOW), strict=True):
        views = assemble_views(stream, recipe).views
        member = manifest.member(recipe.modality)
        session = ort.InferenceSession(
            str(directory / member.artifact("onnx").file), providers=["CPUExecutionProvider"]
        )
        logits, _ = session.run(None, {"clips": views})
        probabilities.append(softmax(logits).mean(axis=0))
    return (WEIGHTS[0] * probabilities[0] + WEIGHTS[1] * probabilities[1]) / sum(WEIGHTS)


def test_two_stream_version_served_end_to_end(two_stream_store, videos) -> None:
    video = videos["motion.mp4"]  # the canvas moves 2 px right and 1 px up per frame
    # TV-L1 is the slow part (about 0.1-0.3 s a field here): room for a busy CI box.
    settings = settings_for(two_stream_store, default_model="two", decode_timeout_s=120)
    with EmbeddedServer(settings) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        response = post_video(c, video, top_k=4, embedding="true", per_clip="true")
        assert response.status_code == 200, response.text
        body = response.json()
        one_frame = post_video(c, videos["one_frame.mp4"])
        listed = c.get("/models/two").json()
        metrics = c.get("/metrics").text
        printed = CliRunner().invoke(app, ["classify", str(video), "--url", server.url])
        oip = c.get("/v2/models/two")  # the protocol's one model has one input

    assert body["top_k"][0]["label"] == "moving right"
    assert [s["label"] for s in body["top_k"]].index("moving up") == 1
    # per_clip=true adds the windows; the answer stays the profile's views' (issue 26).
    expected = _expected_probabilities(two_stream_store, video, DecodeOptions())
    scores = {s["index"]: s["score"] for s in body["top_k"]}
    np.testing.assert_allclose([scores[i] for i in range(4)], expected, rtol=1e-4, atol=1e-6)
    # 24 frames in windows of 4 frames 2 apart: 3 back-to-back clips, each moving right.
    assert [clip["top_k"][0]["label"] for clip in body["clips"]] == ["moving right"] * 3
    assert body["embedding"]["dim"] == 512 + 2  # rgb's, then the probe's (mean x, mean y)
    mean_x, mean_y = body["embedding"]["values"][-2:]
    assert mean_x > 0 > mean_y
    timings = body["timings"]
    assert set(timings["streams"]) == {"rgb", "flow"}
    assert (
        timings["streams"]["flow"]["flow_ms"] > 0 and timings["streams"]["rgb"]["flow_ms"] is None
    )
    assert timings["decode_ms"] >= timings["streams"]["flow"]["flow_ms"]
    # The streams run at once: the request's queue and inference are the slower stream's
    # (not their sum), and never more than the request's total.
    slower = max(timings["streams"].values(), key=lambda s: s["queue_ms"] + s["inference_ms"])
    assert (timings["queue_ms"], timings["inference_ms"]) == pytest.approx(
        (slower["queue_ms"], slower["inference_ms"]), abs=0.01
    )
    assert timings["queue_ms"] + timings["inference_ms"] <= timings["total_ms"]

    assert one_frame.status_code == 422
    assert one_frame.json()["error"] == "too_few_frames"
    assert one_frame.json()["minimum"] == 2

    (version,) = listed["versions"]
    assert {a["file"] for a in version["artifacts"]} == {"rgb.model.onnx", "flow.model.onnx"}
    assert version["fusion"]["weights"] == {"rgb": 1.0, "flow": 1.5}
    assert re.fullmatch(
        r"rgb: (onnxruntime|openvino) .*; flow: (onnxruntime|openvino) .*", version["runtime"]
    )
    assert 'actserve_inference_executions_total{model="two",version="1"}' in metrics
    assert printed.exit_code == 0, printed.output
    assert "moving right" in printed.output and "flow stream: queue" in printed.output
    assert "TV-L1 flow" in printed.output
    assert oip.status_code == 400 and "two-stream version" in oip.json()["error"]


def test_a_flow_model_without_opencv_refuses_to_load(two_stream_store, monkeypatch) -> None:
    """Served without the `flow` extra, the version fails at load with what to install: it
    is listed as broken (the service still starts) and an explicit load says why."""
    import asyncio

    from service.loaded_models import LoadedModels
    from service.metrics import ServiceMetrics

    settings = settings_for(two_stream_store)
    models = LoadedModels(
        ModelStore(two_stream_store),
        ServiceMetrics(),
        runtime=settings.runtime,
        batching=settings.batching,
        drain_timeout_s=1.0,
    )
    flow_module.require_opencv.cache_clear()
    monkeypatch.setitem(__import__("sys").modules, "cv2", None)
    try:

        async def start_then_load() -> dict[str, str]:
            await models.start("two", [])
            broken = models.snapshot().broken()
            with pytest.raises(VersionBroken, match=r"reads optical flow.*actserve\[flow\]"):
                models.resolve("two")
            with pytest.raises(ModelLoadError, match=r"reads optical flow.*actserve\[flow\]"):
                await models.load("two", 1)
            return broken

        broken = asyncio.run(start_then_load())
        assert list(broken) == ["two@1"] and "ModelLoadError" in broken["two@1"]
    finally:
        flow_module.require_opencv.cache_clear()


def test_a_flow_plan_over_the_decode_timeout_is_refused_before_any_work(
    two_stream_store, videos
) -> None:
    """8 flow fields at 2 s each cannot finish in a 10 s decode timeout: 422 at once, saying
    what to change; the fast profile's 4 fields fit and are served."""
    settings = settings_for(two_stream_store, decode_timeout_s=10, flow_field_seconds=2.0)
    with EmbeddedServer(settings) as live, httpx.Client(base_url=live.url, timeout=60) as client:
        refused = post_video(client, videos["motion.mp4"])
        body = refused.json()
        assert refused.status_code == 422 and body["error"] == "limit_exceeded"
        assert (body["limit"], body["value"], body["maximum"]) == ("decode_timeout_s", 16, 10)
        assert "8 optical-flow fields" in body["message"]
        assert "profile=fast (4 fields" in body["message"]
        assert "ACTSERVE_DECODE_TIMEOUT_S" in body["message"]
        text = client.get("/metrics").text
        decodes = metric(text, "actserve_decode_duration_seconds_count", model="two", version="1")
        assert decodes == 0
        served = post_video(client, videos["motion.mp4"], profile="fast")
        assert served.status_code == 200, served.text
