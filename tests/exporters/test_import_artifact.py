"""Bring your own artifact: validated against its declared recipe, refused with a clear
message (and nothing published) when it disagrees, stored with its parity declared."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from actserve.cli import app
from backbones import create_model
from exporters.import_artifact import ArtifactRejected, import_artifact
from model_store import ModelStore, Recipe
from model_store.spec import Layout
from tests.exporters.foreign import (
    AsDict,
    ScoresOnly,
    TimeFirst,
    Tiny,
    classifier_input,
    to_onnx,
    to_torchscript,
)

LABELS = ("wave", "clap", "jump", "sit", "run")
RECIPE = Recipe(
    clip_len=4,
    frame_interval=2,
    num_clips=2,
    num_crops=3,
    short_side=40,
    crop_size=32,
    pixel_scale=1.0,
    mean=(0.45, 0.45, 0.45),
    std=(0.225, 0.225, 0.225),
)
NTCHW = RECIPE.model_copy(update={"layout": Layout.NTCHW})
TIME_FIRST = (4, 3, 32, 32)
CHANNELS_FIRST = (3, 4, 32, 32)


@pytest.fixture(scope="module")
def zoo_model():
    torch.manual_seed(0)
    return create_model("r3d_10", num_classes=len(LABELS), recipe=RECIPE).eval()


def test_an_ntchw_onnx_with_its_own_names_is_published_as_declared(zoo_model, tmp_path) -> None:
    path = to_onnx(TimeFirst(zoo_model), tmp_path / "r3d.onnx", TIME_FIRST)
    store = ModelStore(tmp_path / "store")
    manifest = import_artifact(
        path,
        store,
        name="mine",
        recipe=NTCHW,
        labels=LABELS,
        tensors={"logits": "scores", "embedding": "features"},
    )
    assert (manifest.spec.num_classes, manifest.spec.embedding_dim) == (5, 512)
    assert manifest.spec.tensors.input == "video"  # the graph's only input
    assert manifest.spec.recipe.layout == Layout.NTCHW and manifest.trained
    artifact = manifest.artifact("onnx")
    assert artifact.parity.status == "declared" and artifact.parity.checks == ()
    assert "not compared" in artifact.parity.note
    assert artifact.parity.describe().startswith("declared, not checked")
    # The manifest speaks the service's tensors (what /v2 exchanges); the file keeps its own.
    assert artifact.inputs[0].shape == ("batch", 3, 4, 32, 32)
    stored = store.version_dir("mine", 1) / artifact.file
    assert stored.read_bytes() == path.read_bytes()
    assert manifest.source_checkpoint.file_name == "r3d.onnx"
    store.verify("mine", 1)


def test_an_intermediate_tensor_can_be_the_embedding(zoo_model, tmp_path) -> None:
    path = to_onnx(
        ScoresOnly(zoo_model), tmp_path / "scores.onnx", TIME_FIRST, output_names=("scores",)
    )
    pooled = classifier_input(path)
    store = ModelStore(tmp_path / "store")
    manifest = import_artifact(
        path, store, name="mine", recipe=NTCHW, labels=LABELS, tensors={"embedding": pooled}
    )
    assert manifest.spec.tensors.logits == "scores" and manifest.spec.embedding_dim == 512
    assert "added to the graph's outputs" in manifest.artifact("onnx").parity.note
    session = ort.InferenceSession(
        str(store.version_dir("mine", 1) / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    clips = torch.randn(2, *CHANNELS_FIRST)
    scores, features = session.run(["scores", pooled], {"video": clips.transpose(1, 2).numpy()})
    with torch.no_grad():
        logits, embedding = zoo_model.forward_outputs(clips)
    np.testing.assert_allclose(features, embedding.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(scores, logits.numpy(), rtol=1e-4, atol=1e-5)


def test_a_torchscript_module_returning_a_dict(zoo_model, tmp_path) -> None:
    path = to_torchscript(AsDict(zoo_model), tmp_path / "model.pt", TIME_FIRST)
    manifest = import_artifact(
        path,
        ModelStore(tmp_path / "store"),
        name="mine",
        recipe=NTCHW,
        label_set=None,
        labels=LABELS,
        tensors={"logits": "scores", "embedding": "features"},
    )
    assert manifest.artifact("torchscript").file == "model.ts"
    assert manifest.spec.embedding_dim == 512


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("crop", "H is 32, the recipe says 40"),
        ("layout", r"\(NTCHW\) disagrees with the recipe: T is 3, the recipe says 4"),
        ("fixed_batch", "fixed batch axis of 2"),
        ("labels", "the logits have 5 classes but the labels name 3"),
        ("nan", "not all finite"),
        ("batch_norm", "change with its batch-mates"),
        ("no_embedding", "name the embedding"),
        ("unknown_output", "has no output 'logits'"),
        ("not_onnx", "is not a valid ONNX model"),
        ("not_torchscript", "is not a TorchScript archive"),
    ],
)
def test_a_disagreeing_artifact_is_refused_and_nothing_is_published(
    case, message, tmp_path
) -> None:
    torch.manual_seed(0)
    recipe, labels, tensors = RECIPE, LABELS, {"logits": "scores", "embedding": "features"}
    path = tmp_path / "model.onnx"
    if case == "crop":
        recipe = RECIPE.model_copy(update={"crop_size": 40})
        to_onnx(Tiny(), path, CHANNELS_FIRST)
    elif case == "layout":  # an NCTHW network declared NTCHW
        recipe = NTCHW
        to_onnx(Tiny(), path, CHANNELS_FIRST)
    elif case == "fixed_batch":
        to_onnx(Tiny(), path, CHANNELS_FIRST, dynamic_batch=False)
    elif case == "labels":
        labels = LABELS[:3]
        to_onnx(Tiny(), path, CHANNELS_FIRST)
    elif case in ("nan", "batch_norm"):
        to_onnx(Tiny(broken=case), path, CHANNELS_FIRST)
    elif case == "no_embedding":
        tensors = {}
        to_onnx(Tiny(), path, CHANNELS_FIRST, output_names=("logits", "pooled"))
    elif case == "unknown_output":
        tensors = {"embedding": "features"}
        to_onnx(Tiny(), path, CHANNELS_FIRST, output_names=("scores", "features"))
        tensors["logits"] = "logits"
    elif case == "not_onnx":
        path.write_bytes(b"\x00garbage" * 100)
    else:
        path = tmp_path / "model.pt"
        torch.save(Tiny().state_dict(), path)
    store = ModelStore(tmp_path / "store")
    with pytest.raises(ArtifactRejected, match=message):
        import_artifact(path, store, name="mine", recipe=recipe, labels=labels, tensors=tensors)
    assert store.list_models() == []


def test_the_command_reads_a_recipe_file_and_flags(zoo_model, tmp_path) -> None:
    path = to_onnx(TimeFirst(zoo_model), tmp_path / "r3d.onnx", TIME_FIRST)
    (tmp_path / "labels.txt").write_text("\n".join(LABELS) + "\n")
    (tmp_path / "recipe.toml").write_text(
        'layout = "NTCHW"\nclip_len = 4\nframe_interval = 2\nnum_clips = 2\nnum_crops = 3\n'
        "short_side = 40\ncrop_size = 32\npixel_scale = 1.0\n"
        "mean = [0.45, 0.45, 0.45]\nstd = [0.225, 0.225, 0.225]\n"
        '[tensors]\nlogits = "scores"\nembedding = "features"\n'
    )
    common = [str(path), "--name", "mine", "--store", str(tmp_path / "store")]
    common += ["--labels", str(tmp_path / "labels.txt")]
    result = CliRunner().invoke(
        app,
        ["import-artifact", *common, "--recipe", str(tmp_path / "recipe.toml"), "--num-clips", "1"],
    )
    assert result.exit_code == 0, result.output
    assert "parity declared, not checked" in result.output
    manifest = ModelStore(tmp_path / "store").resolve("mine")
    assert manifest.spec.recipe.num_clips == 1 and manifest.spec.labels == LABELS
    # Flags alone, and a clear one-line refusal.
    result = CliRunner().invoke(
        app, ["import-artifact", *common, "--layout", "NTCHW", "--clip-len", "4"]
    )
    assert result.exit_code == 1
    assert "the declared recipe is not valid" in result.output and "Traceback" not in result.output


def test_triton_serves_the_file_with_its_own_names_and_layout(zoo_model, tmp_path) -> None:
    from exporters.triton import build_config

    path = to_onnx(TimeFirst(zoo_model), tmp_path / "r3d.onnx", TIME_FIRST)
    names = {"logits": "scores", "embedding": "features"}
    manifest = import_artifact(
        path,
        ModelStore(tmp_path / "store"),
        name="mine",
        recipe=NTCHW,
        labels=LABELS,
        tensors=names,
    )
    config = build_config(manifest)
    assert [(t.name, list(t.dims)) for t in config.input] == [("video", [4, 3, 32, 32])]
    assert [(t.name, list(t.dims)) for t in config.output] == [
        ("scores", [5]),
        ("features", [512]),
    ]
    assert config.output[0].label_filename == "labels.txt"
