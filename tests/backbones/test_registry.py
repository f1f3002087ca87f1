"""The registry: names, unknown-name errors, and the default spec each model carries."""

from __future__ import annotations

import pytest
import torch

from backbones import UnknownModelError, create_model, default_spec, list_models, model_entry


def test_names_cover_both_families() -> None:
    names = list_models()
    assert {"r3d_18", "r3d_200", "preact_r3d_200", "wide_r3d_50", "resnext3d_101"} <= set(names)
    assert {"densenet3d_121", "densenet3d_264", "r2plus1d_18", "p3d_63", "p3d_199"} <= set(names)
    assert list_models("p3d_*") == ["p3d_63", "p3d_131", "p3d_199"]
    assert list_models("r3d_*") == [f"r3d_{d}" for d in (10, 18, 34, 50, 101, 152, 200)]


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(UnknownModelError, match="unknown model 'r3d18'.*did you mean r3d_18"):
        create_model("r3d18")


def test_unknown_variant_option_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="widen"):
        create_model("r3d_10", widen=3)


def test_default_spec_carries_recipe_labels_and_outputs() -> None:
    spec = default_spec("r3d_50")
    assert spec.backbone == "r3d_50" and spec.num_classes == 700
    assert spec.label_set == "kinetics700" and spec.labels[0] == "abseiling"
    assert spec.embedding_dim == 2048
    assert spec.recipe.clip_shape == (3, 16, 112, 112) and spec.recipe.pixel_scale == 1.0
    p3d = default_spec("p3d_199")
    assert p3d.recipe.crop_size == 160 and p3d.recipe.channel_order == "BGR"
    assert model_entry("p3d_199").family == "p3d"


def test_other_class_count_drops_the_label_set() -> None:
    with torch.device("meta"):
        model = create_model("r3d_18", num_classes=10)
    assert model.spec.num_classes == 10 and model.spec.labels is None
    with torch.device("meta"):
        model = create_model("r3d_18", num_classes=400, label_set="kinetics400")
    assert model.spec.labels[-1] == "zumba"
