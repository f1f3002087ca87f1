"""benchmarks/load.py's tensors door: the body it sends is the Open Inference Protocol's
binary form of the clips, as the service parses it, asking for the logits in binary."""

from __future__ import annotations

import numpy as np

from benchmarks.load import tensor_payload
from model_store.spec import TensorNames
from service.oip import binary_outputs, parse_request


def test_the_tensors_door_sends_the_clips_as_the_service_parses_them() -> None:
    clips = np.random.default_rng(0).normal(size=(2, 3, 4, 8, 8)).astype(np.float32)
    names = TensorNames(input="video", logits="scores")
    payload = tensor_payload(names, clips)
    parsed = parse_request(payload.content, payload.headers["Inference-Header-Content-Length"])
    np.testing.assert_array_equal(parsed.inputs["video"], clips)
    assert binary_outputs(parsed.request, ("scores", "embedding")) == {"scores": True}
