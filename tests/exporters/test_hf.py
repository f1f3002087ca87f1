"""`transformers` families: the recipe derived from the image processor and the paper, the
ONNX artifact checked against the `transformers` model, refusals before anything is written."""

from __future__ import annotations

import hashlib

import numpy as np
import onnxruntime as ort
import pytest
import torch
import transformers as tf

from exporters import ExportError
from exporters.hf import TOLERANCE, derive_recipe, export_hf
from model_store import ModelStore, ResizeFilter, Sampling, SizeRounding
from model_store.spec import Layout
from tests.exporters.hf_models import FAMILIES, LABELS


def test_videomae_recipe_is_its_processor_and_the_papers_kinetics_protocol() -> None:
    recipe = derive_recipe(tf.VideoMAEConfig(), tf.VideoMAEImageProcessorPil().to_dict())
    assert (recipe.sampling, recipe.clip_len, recipe.frame_interval) == (Sampling.UNIFORM, 16, 4)
    assert (recipe.num_clips, recipe.num_crops) == (5, 3)
    assert (recipe.short_side, recipe.crop_size, recipe.layout) == (224, 224, Layout.NTCHW)
    assert recipe.resize_filter == ResizeFilter.PIL_BILINEAR
    assert recipe.size_rounding == SizeRounding.TRUNCATE
    assert recipe.mean == (0.5, 0.5, 0.5) and recipe.std == (0.5, 0.5, 0.5)
    assert "VideoMAE (Tong et al., NeurIPS 2022)" in recipe.source
    ssv2 = derive_recipe(
        tf.VideoMAEConfig(), tf.VideoMAEImageProcessorPil().to_dict(), dataset="ssv2"
    )
    assert (ssv2.sampling, ssv2.num_clips, ssv2.num_crops) == (Sampling.SEGMENTS, 2, 3)


def test_vivit_offset_rescale_becomes_mean_and_std() -> None:
    # ViViT: p / 127.5 - 1, then (x - 0.5) / 0.5  ==  (p / 255 - 0.75) / 0.25.
    recipe = derive_recipe(tf.VivitConfig(), tf.VivitImageProcessor().to_dict())
    assert recipe.mean == pytest.approx((0.75,) * 3) and recipe.std == pytest.approx((0.25,) * 3)
    assert (recipe.short_side, recipe.crop_size, recipe.clip_len) == (256, 224, 32)
    pixels = np.arange(256, dtype=np.float64)
    theirs = (pixels / 127.5 - 1 - 0.5) / 0.5
    ours = (pixels / 255 - recipe.mean[0]) / recipe.std[0]
    np.testing.assert_allclose(ours, theirs, atol=1e-12)


def test_timesformer_takes_pyslowfast_sampling_at_30_fps() -> None:
    config = tf.TimesformerConfig()  # 8 frames: TimeSformer_divST_8x32_224
    recipe = derive_recipe(config, tf.VideoMAEImageProcessorPil().to_dict())
    assert (recipe.sampling, recipe.clip_len, recipe.frame_interval) == (Sampling.SLOWFAST, 8, 32)
    assert (recipe.target_fps, recipe.num_clips, recipe.num_crops) == (30.0, 1, 3)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_is_exported_with_its_parity_checked(hf_store, family) -> None:
    name = f"hf-{family.replace('_', '-')}"
    store = ModelStore(hf_store / "store")
    manifest = store.resolve(name)
    report = manifest.artifact("onnx").parity
    assert report.status == "checked" and report.passed and report.tolerance == TOLERANCE
    assert {(c.batch_size, c.output) for c in report.checks} == {
        (b, o) for b in (1, 2) for o in ("logits", "embedding")
    }
    assert all(c.max_rel_diff <= TOLERANCE for c in report.checks)
    spec = manifest.spec
    assert spec.labels == LABELS and spec.embedding_dim == 32
    assert spec.tensors.input == "pixel_values" and spec.recipe.layout == Layout.NTCHW
    assert manifest.backbone == family.split("_")[0] and "transformers" in manifest.exporter
    weights = (hf_store / family / "model.safetensors").read_bytes()
    digest = hashlib.sha256(hashlib.sha256(weights).digest()).hexdigest()
    assert manifest.source_checkpoint.sha256 == digest
    # The artifact reproduces the model on a batch size it was not exported or checked with.
    model = tf.AutoModelForVideoClassification.from_pretrained(hf_store / family).eval()
    clips = torch.randn(3, *spec.recipe.input_shape)
    session = ort.InferenceSession(
        str(store.version_dir(name, manifest.version) / "model.onnx"),
        providers=["CPUExecutionProvider"],
    )
    (logits,) = session.run(["logits"], {"pixel_values": clips.numpy()})
    with torch.no_grad():
        reference = model(pixel_values=clips).logits.numpy()
    assert np.abs(logits - reference).max() <= TOLERANCE * np.abs(reference).max()


def test_other_model_types_and_missing_processors_are_refused(tmp_path) -> None:
    image_model = tf.ViTForImageClassification(
        tf.ViTConfig(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
        )
    )
    image_model.save_pretrained(tmp_path / "vit")
    store = ModelStore(tmp_path / "store")
    with pytest.raises(ExportError, match="'vit' model; export-hf takes videomae, timesformer"):
        export_hf(str(tmp_path / "vit"), store)
    config = tf.VideoMAEConfig(
        image_size=32,
        patch_size=8,
        num_frames=4,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=2,
    )
    tf.VideoMAEForVideoClassification(config).save_pretrained(tmp_path / "bare")
    with pytest.raises(ExportError, match="no image-processor configuration"):
        export_hf(str(tmp_path / "bare"), store)
    assert store.list_models() == []


@pytest.mark.slow
def test_the_command_prints_the_checks_and_the_derived_recipe(hf_store, tmp_path) -> None:
    from typer.testing import CliRunner

    from actserve.cli import app

    source = hf_store / "vivit"
    store = tmp_path / "store"
    args = [
        "export-hf",
        str(source),
        "--store",
        str(store),
        "--num-clips",
        "2",
        "--alias",
        "stable",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "published vivit version 1, alias 'stable'" in result.output
    assert "ViViT (Arnab et al., ICCV 2021)" in result.output and "input NTCHW" in result.output
    manifest = ModelStore(store).resolve("vivit", alias="stable")
    assert manifest.spec.recipe.num_clips == 2 and manifest.spec.recipe.frame_interval == 2
    refused = CliRunner().invoke(app, ["export-hf", str(tmp_path), "--store", str(store)])
    assert refused.exit_code == 1 and "cannot read a transformers model" in refused.output
