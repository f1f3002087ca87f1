"""TPN: the mmaction2 layout for both trunks (SlowOnly, TSM), the training-only auxiliary head,
TSM's temporal shift, the fully convolutional test crop, and the clip lengths the temporal
pool can take."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from backbones import (
    ClipShapeError,
    UnrecognisedCheckpointError,
    create_model,
    load_checkpoint,
)
from backbones.checkpoints import detect_layout, list_layouts
from backbones.tpn import convert_mmaction_tpn, temporal_shift
from model_store.spec import Sampling
from tests.backbones.foreign_layouts import to_mmaction_tpn
from tests.backbones.helpers import meta_state_dict, randomise_batchnorm
from tests.backbones.parity_recipe import load_case, rebuild_state_dict, write_checkpoint


def aux_head_parameters(classes: int) -> int:
    """mmaction2's auxiliary head: 1024->2048 1×3×3 conv + BN, Linear 2048->classes."""
    return 2048 * 1024 * 9 + 2 * 2048 + 2049 * classes


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def parity_case() -> dict:
    return load_case("tpn_slowonly_r50")


@pytest.fixture(scope="module")
def public_keys(parity_case) -> dict[str, tuple[int, ...]]:
    """The public file's keys and shapes, as the parity fixture lists them."""
    return {key: tuple(shape) for key, shape, _ in parity_case["tensors"]}


# --------------------------------------------------------------------------- layout


def test_writer_and_converter_match_the_public_slowonly_layout(public_keys) -> None:
    ours = meta_state_dict("tpn_slowonly_r50")
    foreign = to_mmaction_tpn(ours, trunk="slowonly", aux_classes=400)
    assert {k: tuple(t.shape) for k, t in foreign.items()} == public_keys
    renamed = {convert_mmaction_tpn(k) for k in public_keys}
    assert renamed - {None} == set(ours)
    assert [k for k in public_keys if convert_mmaction_tpn(k) is None] == [
        k for k in public_keys if k.startswith("neck.aux_head.")
    ]


def test_converter_inverts_the_tsm_writer() -> None:
    ours = meta_state_dict("tpn_tsm_r50")
    foreign = to_mmaction_tpn(ours, trunk="tsm", aux_classes=174)
    assert "backbone.layer3.5.conv1.conv.net.weight" in foreign
    assert {convert_mmaction_tpn(k) for k in foreign} - {None} == set(ours)


def test_parameter_breakdown_matches_the_reference(public_keys) -> None:
    """91,498,336 = backbone 31,634,496 + neck 39,346,176 + aux head 19,698,064 + head 819,600
    (mmaction2 1.2.0, counted by the parity fixture); TSM's trunk is a 2-D ResNet-50."""
    with torch.device("meta"):
        slowonly = create_model("tpn_slowonly_r50")
        tsm = create_model("tpn_tsm_r50")
    assert _params(slowonly.stem) + _params(slowonly.stages) == 31_634_496
    assert _params(slowonly.neck) == _params(tsm.neck) == 39_346_176
    assert _params(slowonly.head) == 819_600
    aux = sum(
        torch.Size(shape).numel()
        for key, shape in public_keys.items()
        if key.startswith("neck.aux_head.") and not key.endswith(("_mean", "_var", "_tracked"))
    )
    assert aux == aux_head_parameters(400) == 19_698_064
    assert _params(slowonly) + aux == 91_498_336
    assert _params(tsm.stem) + _params(tsm.stages) == 23_508_032
    # The mmaction2 metafile's 82,445,724 counts the 174-class aux head too.
    assert _params(tsm) + aux_head_parameters(174) == 82_445_724


def test_layout_is_told_apart_from_the_other_families(parity_case) -> None:
    public = {k: torch.empty(s, device="meta") for k, s, _ in parity_case["tensors"]}
    assert [layout.name for layout in list_layouts() if layout.matches(public)] == ["mmaction2_tpn"]
    tpn = detect_layout(public)
    found = tpn.identify(public)
    assert (found.model, found.num_classes, found.variant) == (
        "tpn_slowonly_r50",
        400,
        {"in_channels": 3},
    )
    tsm = to_mmaction_tpn(meta_state_dict("tpn_tsm_r50"), trunk="tsm", aux_classes=174)
    assert tpn.identify(tsm).model == "tpn_tsm_r50" and tpn.identify(tsm).num_classes == 174
    # PySlowFast / pytorchvideo X3D files and mmaction2 recognizers without TPN are not TPN files.
    meta = torch.empty(1, device="meta")
    others = [
        dict.fromkeys(["s1.pathway0_stem.conv_xy.weight", "head.projection.weight"], meta),
        dict.fromkeys(["blocks.0.conv.conv_t.weight", "blocks.5.proj.weight"], meta),
        dict.fromkeys(["backbone.conv1.conv.weight", "cls_head.fc_cls.weight"], meta),
    ]
    assert not any(tpn.matches(other) for other in others)


def test_2d_trunk_without_temporal_shift_is_refused() -> None:
    tsm = to_mmaction_tpn(meta_state_dict("tpn_tsm_r50"), trunk="tsm")
    plain = {k.replace(".conv.net.", ".conv."): t for k, t in tsm.items()}
    with pytest.raises(UnrecognisedCheckpointError, match=r"layer1\.0, .* no temporal shift"):
        detect_layout(plain).identify(plain)


# --------------------------------------------------------------------------- auxiliary head


@pytest.fixture(scope="module")
def public_file(parity_case, tmp_path_factory):
    return write_checkpoint(parity_case, tmp_path_factory.mktemp("tpn") / "tpn.pth")


@pytest.fixture(scope="module")
def public_model(public_file):
    model, _ = load_checkpoint(public_file)
    return model


@pytest.mark.slow
def test_aux_head_tensors_are_accepted_unused_and_optional(
    parity_case, public_model, tmp_path
) -> None:
    state_dict = rebuild_state_dict(parity_case)
    aux = [k for k in state_dict if k.startswith("neck.aux_head.")]
    assert len(aux) == 8
    other_aux = dict(state_dict)
    for key in aux:
        other_aux[key] = -3 * state_dict[key] + 1
    without_aux = {k: t for k, t in state_dict.items() if k not in aux}
    without_counters = {k: t for k, t in state_dict.items() if "num_batches_tracked" not in k}
    x = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        expected = public_model.float()(x)
    variants = {
        "other_aux": other_aux,
        "without_aux": without_aux,
        "without_num_batches_tracked": without_counters,
    }
    for name, variant in variants.items():
        path = tmp_path / f"{name}.pth"
        torch.save({"state_dict": variant, "meta": {}}, path)
        model, spec = load_checkpoint(path)
        assert spec.backbone == "tpn_slowonly_r50"
        with torch.no_grad():
            torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
        del model


def test_head_pools_globally_at_the_256_test_crop(public_model) -> None:
    """mmaction2's fcn_test (average pool, then fc_cls as a 1×1×1 conv) on the 256 crop's
    2048×1×8×8 neck output gives the same logits as forward."""
    model = public_model.float()
    captured = []
    hook = model.neck.register_forward_hook(lambda _module, _args, out: captured.append(out))
    try:
        with torch.no_grad():
            logits = model(torch.randn(1, 3, 8, 256, 256))
    finally:
        hook.remove()
    (features,) = captured
    assert features.shape == (1, 2048, 1, 8, 8)
    fc = model.head.fc
    fcn = F.conv3d(F.adaptive_avg_pool3d(features, 1), fc.weight[..., None, None, None], fc.bias)
    torch.testing.assert_close(logits, fcn.flatten(1), rtol=1e-5, atol=1e-4)


# --------------------------------------------------------------------------- TSM


def test_tsm_file_round_trips_with_its_segment_recipe(tmp_path) -> None:
    model = randomise_batchnorm(create_model("tpn_tsm_r50"))
    foreign = to_mmaction_tpn(model.state_dict(), trunk="tsm", aux_classes=174)
    path = tmp_path / "tpn_tsm.pth"
    torch.save({"meta": {"epoch": 150}, "state_dict": foreign}, path)
    loaded, spec = load_checkpoint(path)
    assert (spec.backbone, spec.num_classes, spec.label_set) == (
        "tpn_tsm_r50",
        174,
        "something-something-v1",
    )
    recipe = spec.recipe
    assert recipe.sampling == Sampling.SEGMENTS and recipe.clip_len == 8
    assert (recipe.num_clips, recipe.num_crops, recipe.crop_size) == (2, 3, 256)
    x = torch.randn(2, 3, 8, 64, 64)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(loaded(x), expected, rtol=0, atol=0)
        # Each clip is shifted on its own: the batch never leaks across samples.
        torch.testing.assert_close(
            torch.cat([loaded(x[:1]), loaded(x[1:])]), expected, rtol=1e-4, atol=1e-4
        )


def test_temporal_shift_moves_one_eighth_each_way_within_each_clip() -> None:
    clips, frames, channels = 2, 4, 16
    x = torch.randn(clips * frames, channels, 2, 3)
    out = temporal_shift(x, frames, shift_div=8).reshape(clips, frames, channels, 2, 3)
    x = x.reshape(clips, frames, channels, 2, 3)
    for t in range(frames):
        later = x[:, t + 1, :2] if t + 1 < frames else torch.zeros_like(x[:, t, :2])
        earlier = x[:, t - 1, 2:4] if t > 0 else torch.zeros_like(x[:, t, 2:4])
        torch.testing.assert_close(out[:, t, :2], later, rtol=0, atol=0)
        torch.testing.assert_close(out[:, t, 2:4], earlier, rtol=0, atol=0)
        torch.testing.assert_close(out[:, t, 4:], x[:, t, 4:], rtol=0, atol=0)


# --------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("name", ["tpn_slowonly_r50", "tpn_tsm_r50"])
def test_clips_of_whole_8_frame_windows_are_taken_others_refused(name: str) -> None:
    with torch.device("meta"):
        model = create_model(name, num_classes=5).eval()
        assert model(torch.empty(2, 3, 8, 224, 224)).shape == (2, 5)
        assert model(torch.empty(1, 3, 16, 256, 320)).shape == (1, 5)
        with pytest.raises(ClipShapeError, match="at least 8 frames"):
            model(torch.empty(1, 3, 4, 224, 224))
        with pytest.raises(ClipShapeError, match=r"multiple of 8 frames; got .*\(1, 3, 12, 224"):
            model(torch.empty(1, 3, 12, 224, 224))
