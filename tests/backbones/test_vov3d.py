"""VoV3D: D(2+1)D layers and T-OSA blocks against their definition, the Kinetics and
Something-Something recipes, and the PySlowFast-layout files of both sizes and heads."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from backbones import create_model, load_checkpoint
from backbones.checkpoints import detect_layout
from backbones.vov3d import D2plus1DLayer, TOSABlock, convert_slowfast_vov3d
from backbones.x3d import Projection, SqueezeExcitation
from tests.backbones.foreign_layouts import to_slowfast
from tests.backbones.helpers import meta_model, randomise_batchnorm

# --------------------------------------------------------------------------- blocks


@pytest.mark.parametrize(
    ("in_planes", "stride", "use_se", "residual"),
    [
        (6, 2, True, False),  # a stage's first layer: new width and resolution
        (8, 1, False, True),  # later layers: in = out = inner / 2, input added
        (6, 1, True, False),  # width changes at stride 1: no residual, ReLU still applied
    ],
)
def test_d2plus1d_layer_follows_its_definition(in_planes, stride, use_se, residual) -> None:
    layer = randomise_batchnorm(D2plus1DLayer(in_planes, 16, stride=stride, use_se=use_se)).double()
    assert layer.residual is residual and isinstance(layer.se, SqueezeExcitation) is use_se
    assert layer.conv_s.kernel_size == (1, 3, 3) and layer.conv_t.kernel_size == (3, 1, 1)
    assert layer.conv_s.groups == layer.conv_t.groups == 16
    x = torch.randn(2, in_planes, 5, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        out = F.relu(layer.bn_a(layer.conv_a(x)))
        out = layer.bn_st(layer.conv_t(layer.conv_s(out)))
        if use_se:
            gate = out.mean(dim=(2, 3, 4), keepdim=True)
            out = out * torch.sigmoid(layer.se.fc2(F.relu(layer.se.fc1(gate))))
        out = layer.bn_c(layer.conv_c(out * torch.sigmoid(out)))
        expected = F.relu(out + x) if residual else F.relu(out)
        torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("stride", [1, 2])
def test_tosa_concatenates_every_layer_and_the_input_at_stride_1(stride: int) -> None:
    shortcut = Projection(8, 8) if stride == 2 else None
    block = randomise_batchnorm(
        TOSABlock(8, 16, 8, num_layers=5, stride=stride, shortcut=shortcut)
    ).double()
    assert [isinstance(layer.se, SqueezeExcitation) for layer in block.layers] == [
        True,
        False,
        True,
        False,
        True,
    ]
    assert block.conv_agg.in_channels == (6 if stride == 1 else 5) * 8
    x = torch.randn(1, 8, 4, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        outputs, out = [], x
        for layer in block.layers:
            out = layer(out)
            outputs.append(out)
        concat = torch.cat(([x] if stride == 1 else []) + outputs, dim=1)
        identity = x if shortcut is None else block.shortcut(x)
        expected = F.relu(block.bn_agg(block.conv_agg(concat)) + identity)
        torch.testing.assert_close(block(x), expected)


def test_network_widths_follow_the_inner_channel_rule() -> None:
    model = meta_model("vov3d_l")
    assert model.stem.conv_s.out_channels == 24
    assert [stage[0].bn_agg.num_features for stage in model.stages] == [24, 48, 96, 192]
    assert [stage[0].layers[0].conv_a.out_channels for stage in model.stages] == [48, 96, 192, 384]
    assert [len(stage) for stage in model.stages] == [1, 2, 5, 3]
    assert model.embedding.conv5.out_channels == 384 and model.embedding.window == (16, 7, 7)


# --------------------------------------------------------------------------- recipes


def test_kinetics_recipe_is_scored_fully_convolutionally() -> None:
    model = meta_model("vov3d_m").eval()
    recipe = model.spec.recipe
    assert (recipe.sampling, recipe.clip_len, recipe.frame_interval) == ("slowfast", 16, 5)
    assert (recipe.crop_size, recipe.train_crop_size, recipe.num_views) == (256, 224, 30)
    assert (recipe.resize_filter, recipe.size_rounding, recipe.crop_rule) == (
        "torch_bilinear",
        "floor",
        "ceil",
    )
    assert recipe.channel_order == "RGB" and model.spec.label_set == "kinetics400"
    view = torch.empty(1, *recipe.clip_shape, device="meta")
    assert model.forward_positions(view).shape == (1, 4, 2048)


@pytest.mark.parametrize("frames", [16, 32])
def test_something_something_recipe_for_174_classes(frames: int) -> None:
    recipe = meta_model("vov3d_l", num_classes=174, train_clip_len=frames).spec.recipe
    assert (recipe.sampling, recipe.clip_len, recipe.num_clips, recipe.num_crops) == (
        "slowfast_segments",
        frames,
        1,
        3,
    )
    # cv2 reads BGR and REVERSE_INPUT_CHANNEL reverses it: the network sees RGB
    assert recipe.channel_order == "RGB" and recipe.mean == (0.45,) * 3


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize(
    ("name", "classes", "labels", "inner", "params"),
    [
        ("vov3d_m", 400, "kinetics400", 40, 3_667_360),
        ("vov3d_m", 174, "something-something-v2", 40, 3_204_286),
        ("vov3d_l", 400, "kinetics400", 48, 6_297_168),
        ("vov3d_l", 174, "something-something-v2", 48, 5_834_094),
    ],
)
def test_vov3d_file_determines_model_classes_and_labels(name, classes, labels, inner, params):
    ours = meta_model(name, num_classes=classes).state_dict()
    foreign = to_slowfast(ours)
    assert {convert_slowfast_vov3d(k) for k in foreign} == set(ours)
    layout = detect_layout(foreign)
    assert layout.name == "slowfast_vov3d" and layout.label_sets[classes] == labels
    found = layout.identify(foreign)
    assert (found.model, found.num_classes) == (name, classes)
    assert found.variant == {
        "in_channels": 3,
        "inner_channels": inner,
        "num_layers": 5,
        "head_width": 2048,
    }
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    assert sum(t.numel() for k, t in foreign.items() if not k.endswith(buffers)) == params


@pytest.mark.parametrize("batches_tracked", [True, False])
def test_vov3d_l_ssv2_round_trip_reproduces_logits(tmp_path, batches_tracked) -> None:
    small = {"train_clip_len": 4, "train_crop_size": 64}  # a window small clips can fill
    model = randomise_batchnorm(create_model("vov3d_l", num_classes=174, **small))
    path = tmp_path / "vov3d_L_f16_ssv2.pth"
    torch.save(
        {
            "epoch": 100,
            "model_state": to_slowfast(model.state_dict(), batches_tracked=batches_tracked),
            "optimizer_state": None,
            "cfg": "MODEL:\n  NUM_CLASSES: 174\n",
        },
        path,
    )
    loaded, spec = load_checkpoint(path, **small)
    x = torch.randn(1, 3, 4, 64, 80)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert spec.backbone == "vov3d_l" and spec.label_set == "something-something-v2"
    assert spec.labels[0] == "Approaching something with your camera"
    assert spec.recipe.channel_order == "RGB" and spec.recipe.sampling == "slowfast_segments"
    assert load_checkpoint(path)[1].recipe.clip_len == 16
