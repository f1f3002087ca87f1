"""Two-stream export: an RGB and a flow network in one version, each artifact checked against
its own eager model (the flow one at its two-channel input), fused by the manifest's weights."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from exporters import (
    ExportError,
    Stream,
    TritonExportError,
    export_two_stream_to_store,
    render_config,
)
from exporters.parity import parity_batch
from model_store import Modality, ModelStore
from tests.exporters.conftest import small_flow_model, small_model


@pytest.fixture(scope="module")
def two_stream(tmp_path_factory):
    rgb, flow = small_model(), small_flow_model()
    store = ModelStore(tmp_path_factory.mktemp("store"))
    manifest = export_two_stream_to_store(
        Stream(*rgb, trained=False),
        Stream(*flow, trained=False),
        store,
        weights=(1.0, 1.5),
        name="tiny-two-stream",
        alias="stable",
    )
    return rgb, flow, store, manifest


def test_manifest_names_both_streams_and_the_fusion(two_stream) -> None:
    _, _, store, manifest = two_stream
    assert store.verify("tiny-two-stream", "1") == manifest
    assert manifest.artifacts == () and manifest.backbone == "r3d_10+r3d_10"
    assert manifest.fusion.weights == {Modality.RGB: 1.0, Modality.FLOW: 1.5}
    rgb, flow = manifest.stream("rgb"), manifest.stream("flow")
    assert rgb.artifact("onnx").file == "rgb.model.onnx"
    assert flow.artifact("onnx").file == "flow.model.onnx"
    assert flow.artifact("onnx").inputs[0].shape == ("batch", 2, 8, 32, 32)
    assert flow.spec.recipe.modality == Modality.FLOW and flow.spec.recipe.mean == (128.0, 128.0)
    assert all(m.artifact("onnx").parity.passed for m in manifest.streams)


def test_flow_artifact_from_the_store_computes_the_flow_network(two_stream) -> None:
    _, (model, spec), store, manifest = two_stream
    path = store.version_dir(manifest.name, manifest.version) / "flow.model.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    clips = parity_batch(spec, 2)
    logits, embedding = session.run(None, {"clips": clips.numpy()})
    with torch.no_grad():
        eager_logits, eager_embedding = model.forward_outputs(clips)
    np.testing.assert_allclose(logits, eager_logits.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(embedding, eager_embedding.numpy(), rtol=1e-4, atol=1e-5)


def test_streams_must_be_what_they_claim(tmp_path) -> None:
    rgb, flow = small_model(), small_flow_model()
    store = ModelStore(tmp_path)
    with pytest.raises(ExportError, match="rgb stream's recipe is a flow one"):
        export_two_stream_to_store(
            Stream(*flow, trained=False), Stream(*flow, trained=False), store
        )
    with pytest.raises(ExportError, match="flow stream's recipe is a rgb one"):
        export_two_stream_to_store(Stream(*rgb, trained=False), Stream(*rgb, trained=False), store)
    assert store.list_models() == []


def test_triton_refuses_a_two_stream_version(two_stream) -> None:
    *_, manifest = two_stream
    with pytest.raises(TritonExportError, match="two-stream version"):
        render_config(manifest)
