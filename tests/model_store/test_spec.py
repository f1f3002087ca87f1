"""The spec is torch-free, validated, and survives JSON (it travels into manifests)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from model_store import ModelSpec, Recipe
from model_store.labels import list_label_sets, load_label_set

RECIPE = dict(
    clip_len=16,
    frame_interval=5,
    num_clips=10,
    num_crops=3,
    short_side=256,
    crop_size=256,
    train_crop_size=224,
    pixel_scale=1.0,
    mean=(0.45, 0.45, 0.45),
    std=(0.225, 0.225, 0.225),
)


def test_json_round_trip_keeps_every_field() -> None:
    spec = ModelSpec(
        backbone="x",
        recipe=Recipe(**RECIPE),
        num_classes=400,
        embedding_dim=2048,
        label_set="kinetics400",
    )
    again = ModelSpec.model_validate_json(spec.model_dump_json())
    assert again == spec and again.recipe.num_views == 30 and len(again.labels) == 400


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mean": (0.45, 0.45)}, "one per input channel"),
        ({"std": (0.2, 0.0, 0.2)}, "std must be positive"),
        ({"crop_size": 320}, "larger than short_side"),
        ({"num_crops": 2}, "num_crops"),
        ({"pixel_scale": 100.0}, "pixel_scale"),
        ({"sampling": "slowfast"}, "target_fps is set exactly when"),
        ({"target_fps": 30.0}, "target_fps is set exactly when"),
        ({"sampling": "sliding"}, "takes num_clips 1"),
        ({"stretch_to": (182, 242)}, "needs short_side 182"),
        ({"prescale": {"size": 240}}, "pick a resize_filter other than 'area'"),
        ({"crop_rule": "round"}, "no three-crop form"),
        ({"window_tail": "loop"}, "sampling 'sliding' only"),
        ({"resize_filter": "lanczos"}, "resize_filter"),
    ],
)
def test_recipe_rejects_inconsistent_values(change, message) -> None:
    with pytest.raises(ValidationError, match=message):
        Recipe(**{**RECIPE, **change})


def test_labels_must_match_the_class_count() -> None:
    with pytest.raises(ValidationError, match="kinetics400.*400 names but the model has 174"):
        ModelSpec(
            backbone="x",
            recipe=Recipe(**RECIPE),
            num_classes=174,
            embedding_dim=8,
            label_set="kinetics400",
        )


def test_bundled_label_sets() -> None:
    sizes = {name: len(load_label_set(name)) for name in list_label_sets()}
    assert sizes["kinetics400"] == 400 and sizes["kinetics700"] == 700
    assert sizes["something-something-v2"] == 174 and sizes["ucf101"] == 101
    with pytest.raises(ValueError, match="unknown label set 'k401'"):
        load_label_set("k401")


def test_model_store_never_imports_torch() -> None:
    code = "import sys, model_store, model_store.spec; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_a_schema_1_recipe_means_what_it_meant() -> None:
    """Manifests written before schema 2 have none of its fields: their defaults are actserve's
    protocol of then (mmaction2 sampling, FFmpeg's area filter, mmcv rounding, floor crops, the
    tail window dropped)."""
    from model_store import Manifest
    from service.settings import BUNDLED_STORE

    path = next(BUNDLED_STORE.glob("*/1/manifest.json"))
    manifest = Manifest.model_validate_json(path.read_bytes())
    assert manifest.schema_version == 1
    recipe = manifest.spec.recipe
    assert "resize_filter" not in json.loads(path.read_text())["spec"]["recipe"]
    assert (recipe.sampling, recipe.resize_filter, recipe.size_rounding) == (
        "uniform",
        "area",
        "mmcv",
    )
    assert (recipe.crop_rule, recipe.window_tail, recipe.stretch_to, recipe.prescale) == (
        "floor",
        "drop",
        None,
        None,
    )
