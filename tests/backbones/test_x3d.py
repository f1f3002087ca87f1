"""X3D: the expansion rules, fully convolutional testing at crops larger than the training
crop, export, and both public checkpoint layouts (PySlowFast and pytorchvideo)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from backbones import CheckpointMismatchError, ClipShapeError, create_model, load_checkpoint
from backbones.checkpoints import detect_layout, list_layouts
from backbones.x3d import (
    X3D,
    SqueezeExcitation,
    average_position_scores,
    convert_pytorchvideo_x3d,
    convert_slowfast_x3d,
)
from model_store.spec import Recipe
from tests.backbones.foreign_layouts import to_hara, to_p3d_port, to_pytorchvideo_x3d, to_slowfast
from tests.backbones.helpers import meta_model, randomise_batchnorm


def _small_x3d(**kwargs: object) -> X3D:
    """X3D-M's network with a 4×64 training window (2×2 cells at the end): cheap to run."""
    model = create_model("x3d_m", num_classes=7, train_clip_len=4, train_crop_size=64, **kwargs)
    return randomise_batchnorm(model).double()


# --------------------------------------------------------------------------- architecture


def test_expansion_rules_give_the_published_widths_and_depths() -> None:
    assert X3D.expand(2.2, 2.0, 2.25) == {
        "stem_width": 24,
        "widths": (24, 48, 96, 192),
        "inner_widths": (54, 108, 216, 432),
        "depths": (3, 5, 11, 7),
    }
    assert X3D.expand(5.0, 2.0, 2.25)["depths"] == (5, 10, 25, 15)


@pytest.mark.parametrize(("channels", "width"), [(54, 8), (108, 8), (216, 16), (432, 32)])
def test_se_width_is_a_sixteenth_rounded_to_eight(channels: int, width: int) -> None:
    assert SqueezeExcitation(channels).fc1.out_channels == width


def test_se_sits_on_even_blocks_and_shortcuts_on_first_blocks() -> None:
    model = meta_model("x3d_m")
    for stage in model.stages:
        assert [isinstance(b.se, SqueezeExcitation) for b in stage] == [
            i % 2 == 0 for i in range(len(stage))
        ]
        assert [b.shortcut is not None for b in stage] == [i == 0 for i in range(len(stage))]
    assert model.stem.conv_s.weight.shape == (24, 3, 1, 3, 3) and model.stem.conv_s.stride == (
        1,
        2,
        2,
    )
    assert model.stem.conv_t.weight.shape == (24, 1, 5, 1, 1) and model.stem.conv_t.groups == 24
    assert model.stages[0][0].conv_b.groups == 54 and model.stages[0][0].conv_b.stride == (1, 2, 2)
    assert isinstance(
        meta_model("x3d_m", stage1_shortcut_bn=False).stages[0][0].shortcut.bn, torch.nn.Identity
    )


# name -> head window, window positions at the recipe's test view, recipe (frames, interval, crop)
ZOO_GEOMETRY = {
    "x3d_xs": ((4, 5, 5), 4, (4, 12, 182)),
    "x3d_s": ((13, 5, 5), 4, (13, 6, 182)),
    "x3d_m": ((16, 7, 7), 4, (16, 5, 256)),
    "x3d_l": ((16, 10, 10), 9, (16, 5, 356)),
}


@pytest.mark.parametrize("name", sorted(ZOO_GEOMETRY))
def test_public_test_crops_are_scored_at_several_window_positions(name: str) -> None:
    window, positions, (frames, interval, crop) = ZOO_GEOMETRY[name]
    model = meta_model(name).eval()
    recipe = model.spec.recipe
    assert model.embedding.window == window
    assert (recipe.clip_len, recipe.frame_interval, recipe.crop_size) == (frames, interval, crop)
    assert recipe.short_side == crop and recipe.num_views == 30
    assert recipe.train_crop_size == model.train_crop_size and recipe.mean == (0.45,) * 3
    test_view = torch.empty(1, *recipe.clip_shape, device="meta")
    side = recipe.train_crop_size
    train_view = torch.empty(1, 3, frames, side, side, device="meta")
    assert model.forward_positions(test_view).shape == (1, positions, 2048)
    assert model.forward_positions(train_view).shape == (1, 1, 2048)


# --------------------------------------------------------------------------- fully convolutional


def _reference_position_logits(model: X3D, x: torch.Tensor, window: tuple[int, int, int]):
    """Per-position logits computed by hand from the modules: each stride-1 window of the
    conv5 map averaged, then lin5, ReLU and the projection. -> (N, P, K)"""
    out = model.stem(x)
    for stage in model.stages:
        out = stage(out)
    emb = model.embedding
    out = F.relu(emb.bn5(emb.conv5(out)))
    kt, kh, kw = window
    lin5 = emb.lin5.weight.flatten(1)
    logits = []
    for t in range(out.shape[2] - kt + 1):
        for i in range(out.shape[3] - kh + 1):
            for j in range(out.shape[4] - kw + 1):
                cell = out[:, :, t : t + kt, i : i + kh, j : j + kw].mean(dim=(2, 3, 4))
                feature = F.relu(cell @ lin5.T)
                logits.append(feature @ model.head.fc.weight.T + model.head.fc.bias)
    return torch.stack(logits, dim=1)


def test_one_window_position_gives_the_projection_logits() -> None:
    model = _small_x3d()
    x = torch.randn(2, 3, 4, 64, 64, dtype=torch.float64)  # the training geometry
    with torch.no_grad():
        expected = _reference_position_logits(model, x, (4, 2, 2))
        assert expected.shape[1] == 1
        torch.testing.assert_close(model(x), expected[:, 0], rtol=1e-12, atol=1e-12)
        features = model.forward_features(x)
        torch.testing.assert_close(model.forward_head(features), model(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("name", "shape", "message"),
    [
        ("x3d_m", (1, 3, 8, 224, 224), "at least 16 frames of at least 193x193"),
        ("x3d_m", (1, 3, 16, 256, 192), "at least 16 frames of at least 193x193"),
        ("x3d_l", (1, 3, 16, 288, 288), "at least 16 frames of at least 289x289"),
        ("x3d_xs", (1, 3, 4, 128, 182), "at least 4 frames of at least 129x129"),
    ],
)
def test_views_smaller_than_the_head_window_are_refused(name, shape, message) -> None:
    """The reference's pool cannot take them either; the error says what the window needs."""
    model = meta_model(name)
    with pytest.raises(ClipShapeError, match=message):
        model(torch.empty(shape, device="meta"))


def test_larger_view_averages_the_softmax_over_window_positions() -> None:
    model = _small_x3d()
    x = torch.randn(2, 3, 5, 64, 96, dtype=torch.float64)  # 2 × 1 × 2 window positions
    with torch.no_grad():
        per_position = _reference_position_logits(model, x, (4, 2, 2))
        assert per_position.shape == (2, 4, 7)
        scores = model(x)
        positions = model.forward_positions(x)
    torch.testing.assert_close(
        scores.softmax(dim=-1), per_position.softmax(dim=-1).mean(dim=1), rtol=1e-12, atol=1e-14
    )
    torch.testing.assert_close(model.forward_features(x), positions.mean(dim=1))


def test_position_average_survives_extreme_logits() -> None:
    logits = torch.tensor([[[1000.0, 0.0, -1000.0], [0.0, 1000.0, -1000.0]]])
    scores = average_position_scores(logits)
    assert torch.isfinite(scores[:, :2]).all()
    torch.testing.assert_close(scores.softmax(-1), torch.tensor([[0.5, 0.5, 0.0]]))


@pytest.mark.parametrize("shape", [(2, 3, 4, 64, 64), (2, 3, 4, 96, 96)])
def test_exports_at_the_training_and_a_larger_view(shape) -> None:
    model = _small_x3d().float()
    x = torch.randn(shape)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x), rtol=0, atol=0)


def test_onnx_and_torchscript_artifacts_score_a_larger_view_like_the_model(tmp_path) -> None:
    """The exporters' artifacts (ONNX, traced TorchScript) at a 4-position view: the same
    averaged logits and position-averaged embedding as the eager model."""
    from exporters.onnx import export_onnx, onnx_runner
    from exporters.parity import check_parity
    from exporters.torchscript import export_torchscript, torchscript_runner

    recipe = Recipe(
        clip_len=4,
        frame_interval=5,
        num_clips=1,
        num_crops=1,
        short_side=96,
        crop_size=96,
        train_crop_size=64,
        pixel_scale=1.0,
        mean=(0.45, 0.45, 0.45),
        std=(0.225, 0.225, 0.225),
    )
    model = randomise_batchnorm(
        create_model("x3d_xs", num_classes=7, train_crop_size=64, recipe=recipe)
    ).float()
    spec = model.spec
    with torch.no_grad():
        clips = torch.randn(1, *recipe.clip_shape)
        assert model.forward_positions(clips).shape[1] == 4
        logits, embedding = model.forward_outputs(clips)
        torch.testing.assert_close(logits, model(clips), rtol=0, atol=0)
        torch.testing.assert_close(embedding, model.forward_features(clips), rtol=0, atol=0)
    for export, runner in [
        (export_onnx, onnx_runner),
        (export_torchscript, torchscript_runner),
    ]:
        run, runtime = runner(export(model, spec, tmp_path / f"model.{export.__name__}"))
        report = check_parity(model, run, spec, runtime=runtime)
        assert report.passed, report


# --------------------------------------------------------------------------- checkpoints

WRITERS = {"slowfast_x3d": to_slowfast, "pytorchvideo_x3d": to_pytorchvideo_x3d}
CONVERTERS = {"slowfast_x3d": convert_slowfast_x3d, "pytorchvideo_x3d": convert_pytorchvideo_x3d}
#: Each layout's first-stage shortcut: BN in PySlowFast, none in pytorchvideo.
SHORTCUT_BN = {"slowfast_x3d": True, "pytorchvideo_x3d": False}


@pytest.mark.parametrize("layout", sorted(WRITERS))
@pytest.mark.parametrize(
    ("name", "classes", "read_as", "alternatives"),
    [
        ("x3d_xs", 400, "x3d_m", ("x3d_xs", "x3d_s")),
        ("x3d_s", 400, "x3d_m", ("x3d_xs", "x3d_s")),
        ("x3d_m", 400, "x3d_m", ("x3d_xs", "x3d_s")),
        ("x3d_m", 174, "x3d_m", ("x3d_xs", "x3d_s")),
        ("x3d_l", 400, "x3d_l", ()),
    ],
)
def test_x3d_file_determines_network_and_variant(layout, name, classes, read_as, alternatives):
    ours = meta_model(name, num_classes=classes, stage1_shortcut_bn=SHORTCUT_BN[layout])
    ours = ours.state_dict()
    foreign = WRITERS[layout](ours)
    assert {CONVERTERS[layout](k) for k in foreign} == set(ours)
    found_layout = detect_layout(foreign)
    assert found_layout.name == layout
    found = found_layout.identify(foreign)
    assert (found.model, found.num_classes, found.alternatives) == (read_as, classes, alternatives)
    assert found.variant == {
        "in_channels": 3,
        "head_width": 2048,
        "stage1_shortcut_bn": SHORTCUT_BN[layout],
    }


def _save(tmp_path, state_dict, name="x3d.pyth"):
    path = tmp_path / name
    torch.save({"epoch": 300, "model_state": state_dict, "optimizer_state": None}, path)
    return path


@pytest.mark.parametrize("layout", sorted(WRITERS))
@pytest.mark.parametrize("batches_tracked", [True, False])
def test_x3d_l_round_trip_reproduces_logits(tmp_path, layout, batches_tracked) -> None:
    # X3D-L's tensors with a 4×64 training window, so that a small clip runs (2 positions).
    small = {"train_clip_len": 4, "train_crop_size": 64}
    model = create_model("x3d_l", stage1_shortcut_bn=SHORTCUT_BN[layout], **small)
    model = randomise_batchnorm(model)
    state = {
        k: v
        for k, v in model.state_dict().items()
        if batches_tracked or not k.endswith("num_batches_tracked")
    }
    path = _save(tmp_path, WRITERS[layout](state))
    loaded, _ = load_checkpoint(path, **small)
    x = torch.randn(1, 3, 4, 64, 80)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    _, spec = load_checkpoint(path)
    assert spec.backbone == "x3d_l" and spec.label_set == "kinetics400"
    assert (spec.recipe.crop_size, spec.recipe.train_crop_size) == (356, 312)


def test_xs_and_s_files_are_read_as_the_model_asked_for(tmp_path) -> None:
    model = randomise_batchnorm(create_model("x3d_xs"))
    path = _save(tmp_path, to_slowfast(model.state_dict()))
    loaded, spec = load_checkpoint(path, model="x3d_xs")
    assert spec.backbone == "x3d_xs" and loaded.embedding.window == (4, 5, 5)
    assert (spec.recipe.clip_len, spec.recipe.frame_interval, spec.recipe.crop_size) == (4, 12, 182)
    x = torch.randn(1, 3, 4, 160, 160)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    _, spec = load_checkpoint(path)
    assert spec.backbone == "x3d_m" and spec.recipe.clip_len == 16
    assert load_checkpoint(path, model="x3d_s")[1].recipe.clip_len == 13
    with pytest.raises(CheckpointMismatchError, match="holds a x3d_m or x3d_xs or x3d_s .* not a"):
        load_checkpoint(path, model="x3d_l")


def test_stage1_shortcut_bn_is_read_off_the_file_never_dropped_or_invented(tmp_path) -> None:
    with_bn = to_pytorchvideo_x3d(create_model("x3d_m").state_dict())
    loaded, _ = load_checkpoint(_save(tmp_path, with_bn))
    assert isinstance(loaded.stages[0][0].shortcut.bn, torch.nn.BatchNorm3d)
    without_bn = {k: v for k, v in with_bn.items() if "blocks.1.res_blocks.0.branch1_norm" not in k}
    loaded, _ = load_checkpoint(_save(tmp_path, without_bn, "ptv.pyth"))
    assert isinstance(loaded.stages[0][0].shortcut.bn, torch.nn.Identity)
    with pytest.raises(
        CheckpointMismatchError, match=r"missing from the file \(4\): stages.0.0.shortcut.bn"
    ):
        load_checkpoint(tmp_path / "ptv.pyth", stage1_shortcut_bn=True)


def test_layouts_claim_only_their_own_files() -> None:
    """Every file matches exactly one layout; mmaction2's TPN keys match none of X3D/VoV3D's."""
    x3d = meta_model("x3d_m").state_dict()
    files = {
        "slowfast_x3d": to_slowfast(x3d),
        "pytorchvideo_x3d": to_pytorchvideo_x3d(meta_model("x3d_m").state_dict()),
        "slowfast_vov3d": to_slowfast(meta_model("vov3d_m").state_dict()),
        "hara2020_resnet": to_hara(meta_model("r3d_10").state_dict(), year=2020),
        "p3d_port": to_p3d_port(meta_model("p3d_63").state_dict()),
    }
    for expected, state_dict in files.items():
        assert [layout.name for layout in list_layouts() if layout.matches(state_dict)] == [
            expected
        ]
    tpn = {
        "backbone.conv1.conv.weight": torch.empty(64, 3, 1, 7, 7),
        "backbone.layer1.0.conv1.conv.weight": torch.empty(64, 64, 1, 1, 1),
        "neck.pyramid_fusion.conv.weight": torch.empty(2048, 4096, 1, 1, 1),
        "cls_head.fc_cls.weight": torch.empty(400, 2048),
    }
    ours = {"slowfast_x3d", "pytorchvideo_x3d", "slowfast_vov3d"}
    assert not [
        layout.name for layout in list_layouts() if layout.name in ours and layout.matches(tpn)
    ]
