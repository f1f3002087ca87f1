"""Exporting: artifacts that compute what the eager model computes, checked before they are
published, recorded in the manifest, and readable without this project's code."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import exporters.pipeline
from exporters import ExportError, ParityError, export_to_store
from exporters.parity import parity_batch
from model_store import ModelStore
from tests.exporters.conftest import LABELS, small_model


def test_manifest_records_every_artifact_with_its_parity(exported) -> None:
    _, spec, store, manifest = exported
    assert [(a.file, a.format, a.precision) for a in manifest.artifacts] == [
        ("model.onnx", "onnx", "fp32"),
        ("model.ts", "torchscript", "fp32"),
        ("model.fp16.onnx", "onnx", "fp16"),
    ]
    assert manifest.trained is False and manifest.spec == spec and manifest.version == 1
    assert store.aliases(manifest.name)["stable"].version == 1
    assert {"torch", "onnx", "python"} <= set(manifest.exporter)
    for artifact in manifest.artifacts:
        report = artifact.parity
        assert report.passed
        assert {(c.batch_size, c.output) for c in report.checks} == {
            (b, o) for b in (1, 2) for o in ("logits", "embedding")
        }
        assert all(c.max_rel_diff <= report.tolerance for c in report.checks)
        assert artifact.inputs[0].shape == ("batch", 3, 8, 32, 32)
        assert [o.shape for o in artifact.outputs] == [("batch", 4), ("batch", 512)]
    assert manifest.artifact("onnx").opset == 18 and manifest.artifact("torchscript").opset is None


def test_store_to_onnxruntime_round_trip_gives_the_recorded_numbers(exported) -> None:
    model, spec, store, manifest = exported
    verified = store.verify(manifest.name, manifest.version)
    path = store.version_dir(manifest.name, manifest.version) / "model.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for check in verified.artifact("onnx").parity.checks:
        clips = parity_batch(spec, check.batch_size)
        logits, embedding = session.run(None, {"clips": clips.numpy()})
        with torch.no_grad():
            eager = dict(zip(("logits", "embedding"), model.forward_outputs(clips), strict=True))
        ours = {"logits": logits, "embedding": embedding}[check.output]
        diff = float(np.abs(ours - eager[check.output].numpy()).max())
        assert diff == pytest.approx(check.max_abs_diff, rel=1e-6, abs=1e-12)


def test_onnx_graph_has_named_io_and_a_dynamic_batch(exported) -> None:
    _, _, store, manifest = exported
    path = store.version_dir(manifest.name, manifest.version) / "model.onnx"
    graph = onnx.load(str(path)).graph
    onnx.checker.check_model(str(path), full_check=True)
    (clips,) = graph.input
    dims = [d.dim_param or d.dim_value for d in clips.type.tensor_type.shape.dim]
    assert clips.name == "clips" and isinstance(dims[0], str) and dims[1:] == [3, 8, 32, 32]
    assert [o.name for o in graph.output] == ["logits", "embedding"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits, embedding = session.run(None, {"clips": np.zeros((5, 3, 8, 32, 32), np.float32)})
    assert logits.shape == (5, 4) and embedding.shape == (5, 512)


def test_fp16_artifact_keeps_float32_io(exported) -> None:
    _, _, store, manifest = exported
    path = store.version_dir(manifest.name, manifest.version) / "model.fp16.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float)"
    assert [o.type for o in session.get_outputs()] == ["tensor(float)", "tensor(float)"]
    assert any(
        i.data_type == onnx.TensorProto.FLOAT16 for i in onnx.load(str(path)).graph.initializer
    )


BLOCKED_LOAD = textwrap.dedent(
    """
    import sys, json
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"backbones", "exporters", "model_store", "actserve"}:
                raise ImportError(f"{name} is blocked")
    sys.meta_path.insert(0, Block())
    import torch
    files = {"actserve/spec.json": ""}
    module = torch.jit.load(sys.argv[1], _extra_files=files)
    logits, embedding = module(torch.zeros(3, 3, 8, 32, 32))
    labels = json.loads(files["actserve/spec.json"])["labels"]
    print(tuple(logits.shape), tuple(embedding.shape), labels)
    """
)


def test_torchscript_loads_without_the_project(exported) -> None:
    _, _, store, manifest = exported
    path = store.version_dir(manifest.name, manifest.version) / "model.ts"
    result = subprocess.run(
        [sys.executable, "-c", BLOCKED_LOAD, str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"(3, 4) (3, 512) {list(LABELS)}"


def test_failed_parity_stops_the_export_with_numbers(tmp_path, monkeypatch) -> None:
    real_runner = exporters.pipeline.onnx_runner

    def drifting_runner(path):
        run, runtime = real_runner(path)
        return (lambda clips: tuple(out + 0.5 for out in run(clips))), runtime

    monkeypatch.setattr(exporters.pipeline, "onnx_runner", drifting_runner)
    model, spec = small_model()
    store = ModelStore(tmp_path / "store")
    with pytest.raises(
        ParityError,
        match=r"(?s)model.onnx failed the parity check.*logits batch 1: max abs diff 0.5",
    ):
        export_to_store(model, spec, store, trained=False, alias="stable")
    assert store.list_models() == []


def test_bad_requests_fail_before_any_work(tmp_path) -> None:
    model, spec = small_model()
    store = ModelStore(tmp_path / "store")
    with pytest.raises(ExportError, match="formats must be among"):
        export_to_store(model, spec, store, trained=False, formats=("tflite",))
    with pytest.raises(ExportError, match="include the onnx format"):
        export_to_store(model, spec, store, trained=False, formats=("torchscript",), fp16=True)
    with pytest.raises(ValueError, match="invalid model name"):
        export_to_store(model, spec, store, trained=False, name="../x")
    assert not store.root.exists()
