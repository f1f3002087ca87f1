"""The Open Inference Protocol endpoints with Triton's official HTTP client
(`tritonclient.http`) against the service on loopback: health and metadata, inference in JSON
and binary form equal to the artifact run directly and to /classify on the same views, and the
errors, metrics and queue bound that /classify has."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import onnxruntime
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from model_store import ModelStore
from service.video import DecodeOptions, VideoLimits, decode_video
from tests.service.conftest import LABELS, LiveServer, metric, post_video, settings_for

SHAPE = (3, 4, 32, 32)  # the tiny model's view: C, T, H, W


@pytest.fixture(scope="module")
def server(store_root) -> Iterator[LiveServer]:
    with LiveServer(settings_for(store_root)) as live:
        yield live


@pytest.fixture(scope="module")
def client(server) -> Iterator[triton.InferenceServerClient]:
    oip = triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=60)
    yield oip
    oip.close()


def clips(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, *SHAPE)).astype(np.float32)


def reference(store_root, batch: np.ndarray, version: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The stored ONNX artifact run directly, outside the service."""
    path = ModelStore(store_root).version_dir("tiny", version) / "model.onnx"
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits, embedding = session.run(["logits", "embedding"], {"clips": batch})
    return logits, embedding


def infer(
    client: triton.InferenceServerClient,
    batch: np.ndarray,
    *,
    binary: bool = True,
    outputs: list[str] | None = None,
    **kwargs,
) -> triton.InferResult:
    tensor = triton.InferInput("clips", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=binary)
    wanted = None
    if outputs is not None:
        wanted = [triton.InferRequestedOutput(n, binary_data=binary) for n in outputs]
    return client.infer("tiny", [tensor], outputs=wanted, **kwargs)


def test_health_and_metadata(client) -> None:
    assert client.is_server_live() and client.is_server_ready()
    server = client.get_server_metadata()
    assert server["name"] == "actserve" and "binary_tensor_data" in server["extensions"]
    assert client.is_model_ready("tiny") and client.is_model_ready("tiny", "1")
    assert client.is_model_ready("tiny", "stable")
    assert not client.is_model_ready("tiny", "2")  # in the store, not loaded
    meta = client.get_model_metadata("tiny")
    assert meta["name"] == "tiny" and meta["versions"] == ["1"]
    assert meta["platform"].startswith(("openvino", "onnxruntime"))  # auto: OpenVINO on x86
    assert meta["inputs"] == [{"name": "clips", "datatype": "FP32", "shape": [-1, *SHAPE]}]
    outputs = {o["name"]: o for o in meta["outputs"]}
    assert outputs["logits"] == {"name": "logits", "datatype": "FP32", "shape": [-1, len(LABELS)]}
    assert client.get_model_metadata("tiny", "1") == meta
    with pytest.raises(InferenceServerException) as missing:
        client.get_model_metadata("nope")
    assert missing.value.status() == "404" and "nope" in missing.value.message()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_inference_equals_the_artifact_run_directly(client, store_root, binary: bool) -> None:
    batch = clips(3)
    result = infer(client, batch, binary=binary, request_id="oip-1")
    logits, embedding = reference(store_root, batch)
    np.testing.assert_allclose(result.as_numpy("logits"), logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.as_numpy("embedding"), embedding, rtol=1e-4, atol=1e-5)
    answer = result.get_response()
    assert (answer["model_name"], answer["model_version"], answer["id"]) == ("tiny", "1", "oip-1")


def test_versions_aliases_and_output_choice(client, store_root) -> None:
    batch = clips(2, seed=3)
    by_alias = infer(client, batch, model_version="stable", outputs=["logits"], binary=False)
    assert [o["name"] for o in by_alias.get_response()["outputs"]] == ["logits"]
    assert by_alias.as_numpy("embedding") is None
    by_number = infer(client, batch, model_version="1")
    np.testing.assert_allclose(by_alias.as_numpy("logits"), by_number.as_numpy("logits"), atol=1e-5)
    with pytest.raises(InferenceServerException) as unloaded:
        infer(client, batch, model_version="2")
    assert unloaded.value.status() == "404" and "not loaded" in unloaded.value.message()


def test_the_views_of_a_video_score_as_classify_does(server, client, store_root, videos) -> None:
    """The decoded views of a video, sent as tensors, give /classify's scores for it: the
    endpoint takes exactly the model's preprocessed input."""
    manifest = ModelStore(store_root).resolve("tiny")
    options = DecodeOptions(profile=manifest.default_profile)
    decoded = decode_video(videos["h264.mp4"], manifest.spec.recipe, options, VideoLimits())
    logits = infer(client, decoded.views).as_numpy("logits")
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities = (probabilities / probabilities.sum(1, keepdims=True)).mean(0)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        classified = post_video(http, videos["h264.mp4"], top_k=len(LABELS)).json()
    scores = {entry["index"]: entry["score"] for entry in classified["top_k"]}
    np.testing.assert_allclose([scores[i] for i in range(len(LABELS))], probabilities, atol=1e-5)


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (np.zeros((1, 3, 4, 32, 31), np.float32), "this model takes [N, 3, 4, 32, 32]"),
        (np.zeros((0, *SHAPE), np.float32), "with N ≥ 1"),
        (np.full((1, *SHAPE), np.nan, np.float32), "NaN or infinite"),
    ],
    ids=["shape", "empty", "nan"],
)
def test_bad_tensors_are_400_with_the_reason(client, tensor, message) -> None:
    with pytest.raises(InferenceServerException) as refused:
        infer(client, tensor)
    assert refused.value.status() == "400" and message in refused.value.message()


def test_errors_have_the_protocols_shape_and_actservess_code(server) -> None:
    with httpx.Client(base_url=server.url, timeout=30, headers={"X-Request-ID": "e-1"}) as http:
        wrong_type = http.post(
            "/v2/models/tiny/infer",
            json={"inputs": [{"name": "clips", "shape": [1], "datatype": "INT8", "data": [1]}]},
        )
        unknown = http.get("/v2/models/nope/ready")
        not_json = http.post("/v2/models/tiny/infer", content=b"{", headers={"X-Request-ID": "e-2"})
        gzipped = http.post(
            "/v2/models/tiny/infer", content=b"x", headers={"Content-Encoding": "gzip"}
        )
        no_route = http.get("/v2/trace/setting")
    assert wrong_type.status_code == 400
    body = wrong_type.json()
    assert body["code"] == "bad_request" and "INT8" in body["error"] and body["request_id"] == "e-1"
    assert unknown.status_code == 404 and unknown.json()["code"] == "model_not_found"
    assert not_json.status_code == 400 and not_json.json()["request_id"] == "e-2"
    assert gzipped.status_code == 415 and "Content-Encoding" in gzipped.json()["error"]
    assert no_route.status_code == 404 and "error" in no_route.json()


def test_infers_count_in_the_metrics_and_a_full_queue_is_429(store_root) -> None:
    """Through the same batcher: two 6-clip requests fill a 12-view queue during a 1.5 s
    batch delay, so the others get 429 with Retry-After, in the protocol's error shape."""
    settings = settings_for(
        store_root, max_queue_views=12, max_delay_ms=1500, max_batch_views=64, delay_when_idle=True
    )
    with LiveServer(settings) as live, httpx.Client(base_url=live.url, timeout=30) as http:
        oip = triton.InferenceServerClient(live.url.removeprefix("http://"), concurrency=6)

        def send(seed: int) -> str:
            try:
                infer(oip, clips(6, seed))
                return "200"
            except InferenceServerException as error:
                return error.status()

        with ThreadPoolExecutor(6) as pool:
            statuses = sorted(pool.map(send, range(6)))
        oip.close()
        refused = http.post(
            "/v2/models/tiny/infer",
            json={"inputs": [{"name": "clips", "shape": [7, *SHAPE], "datatype": "FP32",
                              "data": clips(7).ravel().tolist()}]},
        )  # fmt: skip
        text = http.get("/metrics").text
    assert statuses[:2] == ["200", "200"] and set(statuses[2:]) <= {"200", "429"}
    assert "429" in statuses
    served = dict(endpoint="/v2/models/{name}/infer", model="tiny", version="1", status="200")
    assert metric(text, "actserve_requests_total", **served) >= 2
    assert metric(text, "actserve_rejections_total", reason="overloaded") >= 1
    assert metric(text, "actserve_inference_items_total", model="tiny", version="1") >= 12
    assert refused.status_code == 200  # the queue has drained by now: N = 7 is accepted


def test_a_body_over_the_upload_limit_is_413(store_root) -> None:
    with LiveServer(settings_for(store_root, max_upload_bytes=10_000)) as live:
        oip = triton.InferenceServerClient(live.url.removeprefix("http://"))
        with pytest.raises(InferenceServerException) as too_big:
            infer(oip, clips(1))  # 49 KB of FP32
        oip.close()
    assert too_big.value.status() == "413" and "max_upload_bytes" in too_big.value.message()


def test_not_ready_is_the_protocols_4xx(client, server) -> None:
    """While the server drains, /v2/health/ready and a model's readiness answer 400 and
    inference 503."""
    engine = server.server.config.app.state.engine
    engine.drain()
    try:
        assert not client.is_server_ready() and not client.is_model_ready("tiny")
        answer = httpx.get(f"{server.url}/v2/health/ready")
        assert answer.status_code == 400 and answer.json() == {"ready": False}
        with pytest.raises(InferenceServerException) as draining:
            infer(client, clips(1))
        assert draining.value.status() == "503" and "draining" in draining.value.message()
    finally:
        engine.admission.draining = False
    assert client.is_server_ready()


def test_the_clients_config_statistics_and_index_calls(client) -> None:
    """What tritonclient asks beyond the core protocol answers instead of 404."""
    infer(client, clips(2))
    config = client.get_model_config("tiny")
    assert config["name"] == "tiny" and config["platform"] == "onnxruntime_onnx"
    assert config["input"] == [{"name": "clips", "data_type": "TYPE_FP32", "dims": list(SHAPE)}]
    assert {o["name"] for o in config["output"]} == {"logits", "embedding"}
    assert config["max_batch_size"] >= 1
    assert client.get_model_config("tiny", "1") == config
    (stats,) = client.get_inference_statistics("tiny")["model_stats"]
    assert (stats["name"], stats["version"]) == ("tiny", "1")
    assert stats["inference_count"] >= 2 and stats["execution_count"] >= 1
    assert stats["inference_stats"]["success"]["count"] >= 1
    assert stats["inference_stats"]["compute_infer"]["ns"] > 0
    everything = client.get_inference_statistics()["model_stats"]
    assert [s["name"] for s in everything] == ["tiny"]
    index = client.get_model_repository_index()
    assert {(e["name"], e["version"], e.get("state")) for e in index} == {
        ("tiny", "1", "READY"),
        ("tiny", "2", None),
    }


def test_version_readiness_agrees_with_metadata(client, server) -> None:
    assert client.is_model_ready("tiny", "1") and client.is_model_ready("tiny", "stable")
    assert not client.is_model_ready("tiny", "2")  # in the store, not loaded: not ready
    for missing in ("99", "nope"):  # not in the store: 404, as the metadata says
        with pytest.raises(InferenceServerException) as metadata:
            client.get_model_metadata("tiny", missing)
        ready = httpx.get(f"{server.url}/v2/models/tiny/versions/{missing}/ready")
        assert metadata.value.status() == str(ready.status_code) == "404"
        assert ready.json()["code"] == "model_not_found"
