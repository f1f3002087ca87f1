"""P3D: the port's and the Caffe graph's block semantics, the A→B→C cycle, and the geometry
that must never mix batch and time."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from backbones import CheckpointMismatchError, ClipShapeError, create_model, load_checkpoint
from backbones.p3d import P3DBlock
from tests.backbones.helpers import randomise_batchnorm
from tests.backbones.parity_recipe import load_case, rebuild_state_dict, write_checkpoint


@pytest.mark.parametrize("semantics", ["port", "caffe"])
@pytest.mark.parametrize("block_type", ["A", "B", "C"])
def test_block_semantics_follow_their_definition(block_type: str, semantics: str) -> None:
    block = randomise_batchnorm(
        P3DBlock(8, 4, block_type=block_type, semantics=semantics), spread=0.5
    ).double()
    x = torch.randn(2, 4, 5, 6, 6, dtype=torch.float64)
    bs = lambda v: block.bn_s(block.conv_s(v))  # noqa: E731
    bt = lambda v: block.bn_t(block.conv_t(v))  # noqa: E731
    s = F.relu(bs(x))
    expected = {
        ("A", "port"): F.relu(bt(s)),
        ("A", "caffe"): F.relu(bt(s)),
        ("B", "port"): s + F.relu(bt(x)),
        ("B", "caffe"): F.relu(s + bt(x)),
        ("C", "port"): s + F.relu(bt(s)),
        ("C", "caffe"): F.relu(0.5 * s + 0.5 * bt(s)),
    }[block_type, semantics]
    with torch.no_grad():
        torch.testing.assert_close(block.spatio_temporal(x), expected)


def test_mixed_net_cycles_a_b_c_over_all_3d_blocks() -> None:
    with torch.device("meta"):
        model = create_model("p3d_199")
    types = "".join(b.block_type for stage in model.stages[:3] for b in stage)
    assert len(types) == 3 + 8 + 36
    assert types == ("ABC" * 16)[:47]
    assert (types.count("A"), types.count("B"), types.count("C")) == (16, 16, 15)


def test_pure_variants_and_flow_stem() -> None:
    with torch.device("meta"):
        pure_b = create_model("p3d_63", block_types="B")
        flow = create_model("p3d_63", in_channels=2)
    assert {b.block_type for stage in pure_b.stages[:3] for b in stage} == {"B"}
    assert flow.stem.conv.weight.shape == (64, 2, 1, 7, 7)
    assert flow.spec.recipe.in_channels == 2 and len(flow.spec.recipe.mean) == 2


@pytest.mark.parametrize("semantics", ["port", "caffe"])
def test_pool1_gives_the_same_grid_in_both_semantics(semantics: str) -> None:
    with torch.device("meta"):
        model = create_model("p3d_63", semantics=semantics)
        out = model.stem(torch.empty(1, 3, 16, 160, 160))
    assert out.shape == (1, 64, 8, 40, 40)


def test_too_few_frames_are_refused_not_mixed_into_the_batch() -> None:
    with torch.device("meta"):
        model = create_model("p3d_63")
        with pytest.raises(ClipShapeError, match="at least 16 frames"):
            model(torch.empty(2, 3, 8, 160, 160))


@pytest.mark.slow
def test_longer_clips_keep_samples_apart() -> None:
    """At 32 frames the port would view (N, C, 2, H, W) as 2N images; here each sample's
    logits depend on that sample alone."""
    model = randomise_batchnorm(create_model("p3d_63", num_classes=5), spread=0.5)
    x = torch.randn(2, 3, 32, 64, 64)
    with torch.no_grad():
        batch = model(x)
        first, second = model(x[:1]), model(x[1:])
    assert batch.shape == (2, 5)
    torch.testing.assert_close(batch, torch.cat([first, second]), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- optical-flow files


def _flow_case() -> dict:
    """The p3d63 fixture's public layout as p3d_flow_*.checkpoint.pth.tar has it: the same
    keys, with `conv1_custom` reading the two flow channels (x, y) instead of three colours."""
    case = copy.deepcopy(load_case("p3d63"))
    stem = next(t for t in case["tensors"] if t[0] == "conv1_custom.weight")
    stem[1] = [64, 2, 1, 7, 7]
    return case


def test_flow_file_in_the_public_layout_loads_strictly(tmp_path) -> None:
    path = write_checkpoint(_flow_case(), tmp_path / "p3d_flow_63.checkpoint.pth.tar")
    flow, spec = load_checkpoint(path, model="p3d_63", num_classes=400)
    rgb, _ = load_checkpoint(write_checkpoint(load_case("p3d63"), tmp_path / "p3d_rgb_63.pth"))
    assert flow.checkpoint_layout == "p3d_port" and spec.label_set == "kinetics400"
    assert spec.recipe.in_channels == 2 and spec.recipe.mean == (128.0, 128.0)
    file_stem = rebuild_state_dict(_flow_case())["conv1_custom.weight"]
    assert torch.equal(flow.stem.conv.weight, file_stem)
    # Past the stem both files hold the same tensors: the RGB net with a third, all-zero
    # input channel computes exactly what the flow net computes.
    with torch.no_grad():
        rgb.stem.conv.weight.copy_(torch.cat([file_stem, torch.zeros(64, 1, 1, 7, 7)], dim=1))
        x = torch.randn(1, 2, 16, 64, 64)
        torch.testing.assert_close(flow(x), rgb(torch.cat([x, torch.zeros_like(x[:, :1])], 1)))


def test_flow_file_is_not_read_as_an_rgb_net(tmp_path) -> None:
    path = write_checkpoint(_flow_case(), tmp_path / "p3d_flow_63.checkpoint.pth.tar")
    with pytest.raises(CheckpointMismatchError, match="does not fit") as raised:
        load_checkpoint(path, in_channels=3)
    assert "conv1_custom.weight" in str(raised.value)
