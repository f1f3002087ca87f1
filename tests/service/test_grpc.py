"""The Open Inference Protocol over gRPC, through Triton's own client (`tritonclient.grpc`),
against the service on loopback: the same answers as the REST transport."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from tests.service.conftest import LiveServer, metric, settings_for
from tests.service.test_v2 import SHAPE, clips, reference


@pytest.fixture(scope="module")
def server(store_root) -> Iterator[LiveServer]:
    with LiveServer(settings_for(store_root, grpc_port=0)) as live:
        yield live


@pytest.fixture(scope="module")
def client(server) -> Iterator[triton.InferenceServerClient]:
    port = server.server.config.app.state.grpc_port
    oip = triton.InferenceServerClient(f"127.0.0.1:{port}")
    yield oip
    oip.close()


def infer(client, batch: np.ndarray, model_version: str = "", **kwargs) -> triton.InferResult:
    tensor = triton.InferInput("clips", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    return client.infer("tiny", [tensor], model_version=model_version, **kwargs)


def test_health_and_metadata(client) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("tiny") and client.is_model_ready("tiny", "1")
    assert not client.is_model_ready("tiny", "2")
    assert client.get_server_metadata().name == "actserve"
    metadata = client.get_model_metadata("tiny")
    assert metadata.versions == ["1"] and metadata.inputs[0].name == "clips"
    assert list(metadata.inputs[0].shape) == [-1, *SHAPE]
    assert {o.name for o in metadata.outputs} == {"logits", "embedding"}


def test_inference_equals_the_artifact_and_the_rest_transport(client, server, store_root):
    batch = clips(3, seed=7)
    answer = infer(client, batch, request_id="g-1")
    logits, embedding = reference(store_root, batch)
    np.testing.assert_allclose(answer.as_numpy("logits"), logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(answer.as_numpy("embedding"), embedding, rtol=1e-4, atol=1e-5)
    response = answer.get_response()
    assert (response.model_name, response.model_version, response.id) == ("tiny", "1", "g-1")
    only = infer(client, batch, "stable", outputs=[triton.InferRequestedOutput("logits")])
    assert only.as_numpy("embedding") is None
    np.testing.assert_allclose(only.as_numpy("logits"), logits, rtol=1e-4, atol=1e-5)
    import httpx

    text = httpx.get(f"{server.url}/metrics").text
    assert metric(text, "actserve_inference_items_total", model="tiny", version="1") >= 6


def test_errors_are_grpc_statuses_with_the_services_message(client) -> None:
    with pytest.raises(InferenceServerException) as unknown:
        client.get_model_metadata("nope")
    assert unknown.value.status() == "StatusCode.NOT_FOUND"
    assert "'nope' does not exist" in unknown.value.message()
    with pytest.raises(InferenceServerException) as shape:
        infer(client, np.zeros((1, 3, 4, 8, 8), np.float32))
    assert shape.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "shape [1, 3, 4, 8, 8]" in shape.value.message()
    with pytest.raises(InferenceServerException) as version:
        infer(client, clips(1), "2")
    assert version.value.status() == "StatusCode.NOT_FOUND"


def test_api_keys_apply_to_grpc_too(store_root) -> None:
    entry = f"grpc-team:{hashlib.sha256(b'k3y').hexdigest()}"
    with LiveServer(settings_for(store_root, grpc_port=0, api_keys=entry)) as live:
        port = live.server.config.app.state.grpc_port
        oip = triton.InferenceServerClient(f"127.0.0.1:{port}")
        try:
            with pytest.raises(InferenceServerException) as missing:
                infer(oip, clips(1))
            assert missing.value.status() == "StatusCode.UNAUTHENTICATED"
            with pytest.raises(InferenceServerException) as wrong:
                infer(oip, clips(1), headers={"x-api-key": "nope"})
            assert wrong.value.status() == "StatusCode.PERMISSION_DENIED"
            assert infer(oip, clips(1), headers={"x-api-key": "k3y"}).as_numpy("logits").shape
        finally:
            oip.close()
