"""Open Inference Protocol bodies: what Triton's own HTTP client encodes parses to the same
arrays, in JSON and binary form, and what the service encodes the client decodes; malformed
bodies are refused with the reason."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.http._utils import _get_inference_request

from service.errors import BadRequest
from service.oip import InferenceResponse, binary_outputs, encode_response, parse_request

CLIPS = np.arange(2 * 3 * 2 * 4 * 4, dtype=np.float32).reshape(2, 3, 2, 4, 4) / 7
OUTPUTS = ("logits", "embedding")


def client_body(binary: bool, outputs: list | None = None) -> tuple[bytes, str | None]:
    """The body and header tritonclient.http sends for CLIPS."""
    tensor = triton.InferInput("clips", list(CLIPS.shape), "FP32")
    tensor.set_data_from_numpy(CLIPS, binary_data=binary)
    body, json_size = _get_inference_request(
        [tensor], "req-7", outputs, 0, False, False, 0, None, None
    )
    return (body if isinstance(body, bytes) else body.encode()), (
        None if json_size is None else str(json_size)
    )


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_the_official_clients_request_parses_to_the_same_tensor(binary: bool) -> None:
    body, header = client_body(binary)
    assert (header is not None) == binary
    parsed = parse_request(body, header)
    assert parsed.request.id == "req-7" and set(parsed.inputs) == {"clips"}
    assert parsed.inputs["clips"].dtype == np.float32
    np.testing.assert_array_equal(parsed.inputs["clips"], CLIPS)


def test_output_choice_and_binary_flags_follow_the_request() -> None:
    every = parse_request(*client_body(True)).request  # no outputs named: all, in binary
    assert binary_outputs(every, OUTPUTS) == {"logits": True, "embedding": True}
    named = parse_request(
        *client_body(False, [triton.InferRequestedOutput("logits", binary_data=False)])
    ).request
    assert binary_outputs(named, OUTPUTS) == {"logits": False}
    unknown = parse_request(*client_body(False, [triton.InferRequestedOutput("scores")]))
    with pytest.raises(BadRequest, match="no output 'scores'"):
        binary_outputs(unknown.request, OUTPUTS)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_the_official_client_decodes_the_response(binary: bool) -> None:
    logits = np.random.default_rng(0).normal(size=(2, 5)).astype(np.float32)
    embedding = np.random.default_rng(1).normal(size=(2, 8)).astype(np.float32)
    meta = InferenceResponse(model_name="tiny", model_version="1", id="req-7", outputs=[])
    body, header = encode_response(
        meta, {"logits": logits, "embedding": embedding}, dict.fromkeys(OUTPUTS, binary)
    )
    assert (header is not None) == binary
    result = triton.InferResult.from_response_body(body, header_length=header)
    np.testing.assert_array_equal(result.as_numpy("logits"), logits)
    np.testing.assert_array_equal(result.as_numpy("embedding"), embedding)
    answer = result.get_response()
    assert (answer["model_name"], answer["model_version"], answer["id"]) == ("tiny", "1", "req-7")


def request(**tensor) -> bytes:
    base = {"name": "clips", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}
    return json.dumps({"inputs": [{**base, **tensor}]}).encode()


@pytest.mark.parametrize(
    ("body", "header", "message"),
    [
        # not the protocol's JSON
        (b"{not json", None, "not an inference request"),
        (b'{"inputs": 3}', None, "not an inference request"),
        (request(datatype="INT64"), None, "is INT64; this server takes FP32"),
        (request(data=[1.0, 2.0, 3.0]), None, "3 values for shape"),
        (request(data=["a", "b"]), None, "data must be numbers"),
        (request(data=None), None, "neither data nor binary_data_size"),
        (request(shape=[-1, 2]), None, "negative axis"),
        (request(parameters={"shared_memory_region": "r"}), None, "shared-memory"),
        # the binary extension's sizes
        (request(data=None, parameters={"binary_data_size": 8}) + b"\0" * 4, "95", "4 bytes"),
        (request(), "9999", "Inference-Header-Content-Length is '9999'"),
        (request(data=None, parameters={"binary_data_size": "8"}), None, "byte count"),
        (request(parameters={"binary_data_size": 8}), None, "both data and binary_data_size"),
        (request() + b"extra", "95", "add up to 0"),
    ],
)
def test_malformed_bodies_are_refused_with_the_reason(body, header, message) -> None:
    if header == "95":
        header = str(body.index(b"}]}") + 3)
    with pytest.raises(BadRequest, match=message):
        parse_request(body, header)
