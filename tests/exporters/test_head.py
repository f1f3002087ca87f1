"""A new linear head edited into a stored ONNX graph: the embedding untouched, the logits
equal to numpy's embedding @ W.T + b, the old head gone, and published like any version."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from exporters.errors import ExportError
from exporters.head import check_head_parity, export_head_to_store, with_linear_head
from model_store import ModelStore, SimilarityCalibration
from service.settings import BUNDLED_STORE

DEMO = ModelStore(BUNDLED_STORE).resolve("demo-actions")
DEMO_DIR = ModelStore(BUNDLED_STORE).version_dir(DEMO.name, DEMO.version)
BASE = DEMO_DIR / "model.onnx"


def head(classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((classes, DEMO.spec.embedding_dim)).astype(np.float32)
    return weight, rng.standard_normal(classes).astype(np.float32)


def run(path: Path, clips: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits", "embedding"], {"clips": clips})


def test_the_new_head_computes_embedding_times_weight_plus_bias(tmp_path: Path) -> None:
    weight, bias = head(3)
    path = with_linear_head(BASE, weight, bias, tmp_path / "model.onnx")
    clips = np.random.default_rng(5).standard_normal((4, *DEMO.spec.recipe.clip_shape))
    clips = clips.astype(np.float32)
    _, base_embedding = run(BASE, clips)
    logits, embedding = run(path, clips)
    np.testing.assert_array_equal(embedding, base_embedding)
    expected = base_embedding.astype(np.float64) @ weight.T.astype(np.float64) + bias
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    graph = onnx.load(str(path)).graph
    initializers = {i.name for i in graph.initializer}
    assert "model.head.fc.weight" not in initializers  # the old head was pruned
    assert [o.name for o in graph.output] == ["logits", "embedding"]
    shape = graph.output[0].type.tensor_type.shape.dim
    assert (shape[0].dim_param, shape[1].dim_value) == ("batch", 3)


def test_parity_is_recorded_and_catches_a_head_that_is_not_the_fit(tmp_path: Path) -> None:
    weight, bias = head(2)
    path = with_linear_head(BASE, weight, bias, tmp_path / "model.onnx")
    report = check_head_parity(BASE, path, DEMO.spec.recipe, weight, bias)
    assert report.passed and {c.output for c in report.checks} == {"logits", "embedding"}
    assert all(c.max_rel_diff < 1e-5 for c in report.checks)
    other, _ = head(2, seed=1)
    assert not check_head_parity(BASE, path, DEMO.spec.recipe, other, bias).passed


def test_a_head_of_the_wrong_width_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="128-wide embedding"):
        with_linear_head(BASE, np.zeros((2, 64)), np.zeros(2), tmp_path / "model.onnx")


def test_published_as_a_store_version_with_its_labels_and_threshold(tmp_path: Path) -> None:
    weight, bias = head(2)
    store = ModelStore(tmp_path / "store")
    calibration = SimilarityCalibration(
        threshold=0.6, balanced_accuracy=1.0, pairs=6, source="4 videos"
    )
    manifest = export_head_to_store(
        store, DEMO, DEMO_DIR, weight, bias, ("a", "b"), name="mine", similarity=calibration
    )
    assert (manifest.name, manifest.version) == ("mine", 1)
    assert store.verify("mine", 1) == manifest and store.resolve("mine").version == 1
    assert manifest.spec.labels == ("a", "b") and manifest.spec.num_classes == 2
    assert manifest.spec.recipe == DEMO.spec.recipe and manifest.backbone == DEMO.backbone
    assert manifest.similarity == calibration
    (artifact,) = manifest.artifacts
    assert artifact.parity.passed and artifact.outputs[0].shape == ("batch", 2)
