"""Every registered backbone: parameter counts against the measured reference figures, the
common face (logits and embedding shapes), and the geometry checks."""

from __future__ import annotations

import pytest
import torch

from backbones import ClipShapeError, create_model, list_models
from tests.backbones.helpers import meta_model

# name, variant, classes -> parameters: an int is exact (parity fixtures, measured counts);
# a float is millions to 2 decimals (../shared/docs/backbones.md, "measured").
PARAMETER_COUNTS = [
    # 3D ResNets (Hara et al.), shortcut A = the 2018 ResNet-18/34 files, B = 2020 default
    ("r3d_10", {"shortcut": "A"}, 400, 14.43),
    ("r3d_10", {"shortcut": "B"}, 400, 14.60),
    ("r3d_18", {"shortcut": "A"}, 400, 33_235_280),
    ("r3d_18", {"shortcut": "B"}, 400, 33.41),
    ("r3d_34", {"shortcut": "A"}, 400, 63.54),
    ("r3d_34", {"shortcut": "B"}, 400, 63.72),
    ("r3d_50", {}, 400, 47.02),
    ("r3d_50", {}, 700, 47_633_276),
    ("r3d_101", {}, 400, 86.06),
    ("r3d_152", {}, 400, 118.22),
    ("r3d_200", {}, 400, 127.42),
    ("preact_r3d_200", {}, 400, 127.42),
    ("wide_r3d_50", {}, 400, 158.25),
    ("resnext3d_101", {}, 400, 48_340_816),
    ("r2plus1d_18", {}, 400, 33.42),
    # DenseNet-BC
    ("densenet3d_121", {}, 400, 11_696_528),
    ("densenet3d_169", {}, 400, 19.25),
    ("densenet3d_201", {}, 400, 26.14),
    ("densenet3d_264", {}, 400, 41.37),
    # P3D (port key layout)
    ("p3d_63", {}, 400, 25_745_232),
    ("p3d_131", {}, 400, 48.09),
    ("p3d_199", {}, 400, 66_492_240),
    # X3D, PySlowFast layout (XS and S are the M network); pytorchvideo's has no BN on the
    # first stage's shortcut
    ("x3d_xs", {}, 400, 3_794_322),
    ("x3d_s", {}, 400, 3_794_322),
    ("x3d_m", {}, 400, 3_794_322),
    ("x3d_m", {"stage1_shortcut_bn": False}, 400, 3_794_274),
    ("x3d_l", {}, 400, 6_153_432),
    ("x3d_l", {"stage1_shortcut_bn": False}, 400, 6_153_384),
    # VoV3D, Kinetics-400 and Something-Something heads
    ("vov3d_m", {}, 400, 3_667_360),
    ("vov3d_m", {}, 174, 3_204_286),
    ("vov3d_l", {}, 400, 6_297_168),
    ("vov3d_l", {}, 174, 5_834_094),
    # TPN without its training-only auxiliary head (built by mmaction2, never run at test):
    # SlowOnly: fixture total 91,498,336 = backbone 31,634,496 + neck 39,346,176
    #   + aux head 19,698,064 + cls head 819,600 -> 91,498,336 - 19,698,064
    ("tpn_slowonly_r50", {}, 400, 71_800_272),
    # TSM (sthv1): metafile 82,445,724 (with aux head) = backbone 23,508,032 + neck 39,346,176
    #   + aux head 19,234,990 + cls head 356,526 -> 82,445,724 - 19,234,990
    ("tpn_tsm_r50", {}, 174, 63_210_734),
]


@pytest.mark.parametrize(("name", "variant", "classes", "expected"), PARAMETER_COUNTS)
def test_parameter_count_matches_reference(name, variant, classes, expected) -> None:
    model = meta_model(name, num_classes=classes, **variant)
    count = sum(p.numel() for p in model.parameters())
    if isinstance(expected, int):
        assert count == expected
    else:
        assert round(count / 1e6, 2) == expected


def test_every_model_has_a_parameter_figure() -> None:
    assert {name for name, *_ in PARAMETER_COUNTS} == set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_face_logits_and_embedding_shapes(name: str) -> None:
    """forward -> (N, K); forward_features -> (N, D) = the spec's embedding; on the recipe's
    clip shape (shape-only, on the meta device)."""
    model = meta_model(name).eval()
    spec = model.spec
    x = torch.empty(2, *spec.recipe.clip_shape, device="meta")
    assert model.forward_features(x).shape == (2, spec.embedding_dim)
    assert model(x).shape == (2, spec.num_classes)
    assert spec.num_classes == model.num_classes and spec.embedding_dim == model.embedding_dim


@pytest.mark.parametrize(
    ("name", "variant", "shape"),
    [
        ("r3d_10", {"shortcut": "A"}, (2, 3, 8, 48, 48)),
        ("r3d_10", {"conv1_t_size": 3, "conv1_t_stride": 2, "max_pool": False}, (1, 3, 8, 40, 56)),
        ("r2plus1d_18", {}, (1, 3, 4, 32, 32)),
        ("densenet3d_121", {}, (2, 3, 16, 32, 32)),
        ("x3d_xs", {"train_crop_size": 32}, (2, 3, 4, 48, 48)),
        ("vov3d_m", {"train_clip_len": 4, "train_crop_size": 32}, (2, 3, 4, 48, 48)),
    ],
)
def test_small_real_forward_is_finite_and_batch_independent(name, variant, shape) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, **variant).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        batch = model(x)
        single = model(x[:1])
    assert batch.shape == (shape[0], 7) and torch.isfinite(batch).all()
    torch.testing.assert_close(batch[:1], single, rtol=1e-4, atol=1e-5)


def test_shortcut_a_subsamples_and_appends_zero_channels() -> None:
    from backbones.resnet3d import ShortcutA

    x = torch.randn(2, 4, 5, 6, 7, dtype=torch.float64)
    out = ShortcutA(out_planes=10, stride=2)(x)
    assert out.shape == (2, 10, 3, 3, 4) and out.dtype == torch.float64
    torch.testing.assert_close(out[:, :4], x[:, :, ::2, ::2, ::2])
    assert (out[:, 4:] == 0).all()


def test_wrong_input_rank_or_channels_is_refused() -> None:
    model = meta_model("r3d_18")
    with pytest.raises(ClipShapeError, match=r"\(N, C, T, H, W\)"):
        model(torch.empty(3, 16, 112, 112, device="meta"))
    with pytest.raises(ClipShapeError, match="3 input channels"):
        model(torch.empty(1, 2, 16, 112, 112, device="meta"))


def test_densenet_refuses_clips_its_transitions_cannot_pool() -> None:
    model = meta_model("densenet3d_121").eval()
    assert model.min_frames == 15
    model(torch.empty(1, 3, 15, 32, 32, device="meta"))
    with pytest.raises(ClipShapeError, match="at least 15 frames"):
        model(torch.empty(1, 3, 8, 112, 112, device="meta"))
