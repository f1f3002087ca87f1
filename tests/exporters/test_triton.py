"""Triton repositories generated from store versions, parsed back with Triton's own
ModelConfig proto and checked field by field against the manifest."""

from __future__ import annotations

import sys

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from exporters import TritonExportError, export_to_store, render_config, write_triton_repository
from tests.exporters.conftest import LABELS, small_model


def parse(path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_config_matches_the_manifest(exported, tmp_path) -> None:
    _, _, store, manifest = exported
    model_dir = write_triton_repository(
        store, manifest.name, tmp_path / "repo", max_batch_size=16, max_queue_delay_us=1500
    )
    config = parse(model_dir / "config.pbtxt")
    artifact = manifest.artifact("onnx")
    assert config.name == manifest.name and config.backend == "onnxruntime"
    assert config.max_batch_size == 16
    assert config.dynamic_batching.max_queue_delay_microseconds == 1500
    assert config.version_policy.latest.num_versions == 1
    (clips,) = config.input
    assert clips.name == "clips" and clips.data_type == model_config_pb2.TYPE_FP32
    assert list(clips.dims) == list(artifact.inputs[0].shape[1:])
    outputs = {o.name: o for o in config.output}
    assert set(outputs) == {"logits", "embedding"}
    for info in artifact.outputs:
        assert list(outputs[info.name].dims) == list(info.shape[1:])
        assert outputs[info.name].data_type == model_config_pb2.TYPE_FP32
    assert outputs["logits"].label_filename == "labels.txt"
    assert (model_dir / "labels.txt").read_text().splitlines() == list(LABELS)
    onnx_file = model_dir / str(manifest.version) / "model.onnx"
    stored = store.version_dir(manifest.name, manifest.version) / "model.onnx"
    assert onnx_file.read_bytes() == stored.read_bytes()


def test_versions_accumulate_and_conflicting_tensors_are_refused(exported, tmp_path) -> None:
    _, spec, store, manifest = exported
    repo = tmp_path / "repo"
    write_triton_repository(store, manifest.name, repo)
    model, _ = small_model(seed=1)
    second = export_to_store(model, spec, store, trained=False)
    write_triton_repository(store, manifest.name, repo, version=second.version)
    assert sorted(p.name for p in (repo / manifest.name).iterdir() if p.is_dir()) == ["1", "2"]
    other = export_to_store(model, spec, store, trained=False, name="other")
    config = parse(repo / manifest.name / "config.pbtxt")
    config.output[0].dims[0] += 1
    (repo / "other").mkdir()
    (repo / "other" / "config.pbtxt").write_text(text_format.MessageToString(config))
    with pytest.raises(TritonExportError, match="other input/output tensors"):
        write_triton_repository(store, other.name, repo)
    (repo / "other" / "config.pbtxt").write_text('name: "other"\nmax_batch: 4\n')
    with pytest.raises(TritonExportError, match="not a Triton model configuration"):
        write_triton_repository(store, other.name, repo)


def test_the_config_is_triton_schema_text_and_round_trips(exported) -> None:
    """What is written is exactly the ModelConfig message, nothing that Triton's parser
    would have to guess at: parsing the text and printing it again gives the same text."""
    _, _, _, manifest = exported
    text = render_config(manifest)
    assert text.startswith(f"# {manifest.name} version {manifest.version} from the actserve")
    body = text.split("\n", 1)[1]
    assert text_format.MessageToString(text_format.Parse(body, model_config_pb2.ModelConfig())) == (
        body
    )
    assert "TYPE_FP32" in body and 'backend: "onnxruntime"' in body


def test_without_tritonclient_the_export_says_what_to_install(exported, monkeypatch) -> None:
    _, _, _, manifest = exported
    monkeypatch.setitem(sys.modules, "tritonclient.grpc", None)  # as if not installed
    with pytest.raises(TritonExportError, match=r"pip install 'actserve\[triton\]'"):
        render_config(manifest)
