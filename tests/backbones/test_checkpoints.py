"""Checkpoint import: layouts are read off the tensors, files round-trip exactly, and every
file that does not fit is refused with what does not fit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from backbones import (
    CheckpointError,
    CheckpointMismatchError,
    UnrecognisedCheckpointError,
    UnsafeCheckpointError,
    create_model,
    load_checkpoint,
)
from backbones.checkpoints import detect_layout, list_layouts, resave_checkpoint
from backbones.densenet3d import convert_hara_densenet
from backbones.p3d import convert_p3d_port
from backbones.resnet3d import convert_hara
from tests.backbones.foreign_layouts import to_hara, to_hara2018_densenet, to_p3d_port
from tests.backbones.helpers import meta_state_dict, randomise_batchnorm


class Pickled:
    """Stands for the arbitrary objects old training scripts pickled into checkpoints."""


# --------------------------------------------------------------------------- layouts

# model, variant, classes -> what the importer must read off a Hara file
HARA_VARIANTS = [
    ("r3d_10", {"shortcut": "A"}, 400),
    ("r3d_18", {"shortcut": "A"}, 400),
    ("r3d_18", {"shortcut": "B", "conv1_t_size": 3}, 700),
    ("r3d_34", {"shortcut": "A"}, 400),
    ("r3d_50", {"shortcut": "B"}, 1039),
    ("r3d_101", {"shortcut": "B"}, 700),
    ("r3d_152", {"shortcut": "B"}, 700),
    ("r3d_200", {"shortcut": "B"}, 700),
    ("preact_r3d_200", {"shortcut": "B"}, 400),
    ("wide_r3d_50", {"stem_width": 64}, 400),
    ("wide_r3d_50", {"stem_width": 128}, 400),
    ("resnext3d_101", {"shortcut": "B"}, 400),
    ("r2plus1d_18", {"shortcut": "B"}, 700),
]


@pytest.mark.parametrize("year", [2018, 2020])
@pytest.mark.parametrize(("name", "variant", "classes"), HARA_VARIANTS)
def test_hara_file_determines_model_and_variant(name, variant, classes, year) -> None:
    ours = meta_state_dict(name, num_classes=classes, **variant)
    foreign = to_hara(ours, year=year, factorised=name.startswith("r2plus1d"))
    assert {convert_hara(k) for k in foreign} | {
        k for k in ours if k.endswith("num_batches_tracked")
    } == set(ours)
    layout = detect_layout(foreign)
    assert layout.name == f"hara{year}_resnet"
    found = layout.identify(foreign)
    assert (found.model, found.num_classes) == (name, classes)
    assert variant.items() <= found.variant.items()
    assert found.variant["in_channels"] == 3


def test_converters_invert_the_test_writers() -> None:
    dense = meta_state_dict("densenet3d_169")
    assert {convert_hara_densenet(k) for k in to_hara2018_densenet(dense)} == {
        k for k in dense if not k.endswith("num_batches_tracked")
    }
    p3d = meta_state_dict("p3d_131")
    assert {convert_p3d_port(k) for k in to_p3d_port(p3d)} == {
        k for k in p3d if not k.endswith("num_batches_tracked")
    }


def test_layout_names_are_unique_and_described() -> None:
    names = [layout.name for layout in list_layouts()]
    assert len(names) == len(set(names)) and all(layout.description for layout in list_layouts())


# --------------------------------------------------------------------------- round trips


def _round_trip(tmp_path, foreign):
    path = tmp_path / "model.pth"
    torch.save({"epoch": 3, "arch": "x", "state_dict": foreign, "optimizer": None}, path)
    return load_checkpoint(path)


@pytest.mark.parametrize(
    ("name", "variant", "year", "shape"),
    [
        ("r3d_10", {"shortcut": "A"}, 2018, (2, 3, 8, 48, 48)),
        ("r3d_10", {"shortcut": "B", "conv1_t_size": 3}, 2020, (2, 3, 8, 48, 48)),
        ("r2plus1d_18", {}, 2020, (1, 3, 8, 32, 32)),
    ],
)
def test_hara_resnet_round_trip_reproduces_logits(tmp_path, name, variant, year, shape) -> None:
    model = randomise_batchnorm(create_model(name, num_classes=400, **variant))
    foreign = to_hara(model.state_dict(), year=year, factorised=name == "r2plus1d_18")
    loaded, spec = _round_trip(tmp_path, foreign)
    x = torch.randn(shape)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert spec.label_set == "kinetics400"
    assert spec.recipe.pixel_scale == (255.0 if year == 2018 else 1.0)


def test_old_densenet_dotted_names_round_trip(tmp_path) -> None:
    model = randomise_batchnorm(create_model("densenet3d_121", num_classes=400))
    loaded, spec = _round_trip(tmp_path, to_hara2018_densenet(model.state_dict()))
    x = torch.randn(1, 3, 16, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert spec.backbone == "densenet3d_121" and spec.recipe.mean[0] == pytest.approx(114.7748)


def test_p3d_flow_checkpoint_round_trips_with_a_flow_recipe(tmp_path) -> None:
    model = randomise_batchnorm(create_model("p3d_63", num_classes=101, in_channels=2))
    loaded, spec = _round_trip(tmp_path, to_p3d_port(model.state_dict()))
    x = torch.randn(1, 2, 16, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert spec.recipe.in_channels == 2 and spec.num_classes == 101
    assert spec.labels is None  # 101 classes: no documented label set for P3D


def test_bare_state_dict_and_unknown_label_count(tmp_path) -> None:
    model = create_model("r3d_10", num_classes=1039)
    path = tmp_path / "bare.pth"
    torch.save(to_hara(model.state_dict(), year=2020), path)
    _, spec = load_checkpoint(path)
    assert spec.num_classes == 1039 and spec.labels is None
    assert spec.label_of(5) == "class_5"
    with pytest.raises(CheckpointMismatchError, match="'kinetics700' has 700 classes.*has 1039"):
        load_checkpoint(path, label_set="kinetics700")


def test_variant_options_the_tensors_cannot_tell_are_passed_through(tmp_path) -> None:
    model = create_model("r3d_10", num_classes=400, conv1_t_stride=2, max_pool=False)
    path = tmp_path / "stride.pth"
    torch.save({"state_dict": to_hara(model.state_dict(), year=2020)}, path)
    loaded, _ = load_checkpoint(path, conv1_t_stride=2, max_pool=False)
    assert loaded.stem.conv.stride == (2, 2, 2) and isinstance(loaded.stem.pool, torch.nn.Identity)


# --------------------------------------------------------------------------- refusals


@pytest.fixture
def r3d10_file(tmp_path):
    def write(mutate=lambda sd: sd, name="r3d10.pth"):
        model = create_model("r3d_10", num_classes=400)
        sd = mutate(to_hara(model.state_dict(), year=2020))
        path = tmp_path / name
        torch.save({"arch": "resnet-10", "state_dict": sd}, path)
        return path

    return write


def test_missing_tensor_is_named(r3d10_file) -> None:
    path = r3d10_file(lambda sd: {k: v for k, v in sd.items() if k != "layer3.0.bn2.running_var"})
    with pytest.raises(
        CheckpointMismatchError, match=r"missing from the file \(1\): stages.2.0.bn2.running_var"
    ):
        load_checkpoint(path)


def test_unexpected_tensor_is_named(r3d10_file) -> None:
    path = r3d10_file(lambda sd: {**sd, "layer1.0.extra.weight": torch.zeros(3)})
    with pytest.raises(
        CheckpointMismatchError, match=r"not in the model \(1\): layer1.0.extra.weight"
    ):
        load_checkpoint(path)


def test_mis_shaped_tensor_is_named_with_both_shapes(r3d10_file) -> None:
    path = r3d10_file(lambda sd: {**sd, "layer2.0.bn1.weight": torch.ones(64)})
    with pytest.raises(
        CheckpointMismatchError, match=r"layer2.0.bn1.weight file \[64\] vs model \[128\]"
    ):
        load_checkpoint(path)


def test_asked_model_and_classes_are_checked(r3d10_file) -> None:
    path = r3d10_file()
    with pytest.raises(CheckpointMismatchError, match="holds a r3d_10 .* not a r3d_50"):
        load_checkpoint(path, model="r3d_50")
    with pytest.raises(CheckpointMismatchError, match="400-class head, not 700"):
        load_checkpoint(path, num_classes=700)


def test_file_that_needs_pickle_code_is_refused_and_resave_fixes_it(r3d10_file, tmp_path) -> None:
    clean = r3d10_file()
    container = torch.load(clean, weights_only=True)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({**container, "args": Pickled()}, unsafe)
    with pytest.raises(UnsafeCheckpointError, match=r"Pickled.*actserve checkpoint resave --trust"):
        load_checkpoint(unsafe)
    safe = resave_checkpoint(unsafe, tmp_path / "safe.pth")
    model, _ = load_checkpoint(safe)
    assert model.spec.backbone == "r3d_10"
    assert set(torch.load(safe, weights_only=True)) == {"state_dict", "arch"}


class Payload:
    """A checkpoint that runs a command when unpickled without weights_only."""

    def __init__(self, call, marker: Path) -> None:
        self.call, self.marker = call, marker

    def __reduce__(self):
        if self.call == "os.system":
            return (os.system, (f"touch {self.marker}",))
        return (eval, (f"open({str(self.marker)!r}, 'w')",))


@pytest.mark.parametrize(
    ("call", "named"),
    [
        # torch 2.13: "Trying to load unsupported GLOBAL posix.system whose module posix is
        # blocked"
        ("os.system", r"it pickles posix\.system, a module torch refuses outright\)"),
        # torch 2.13: "Unsupported global: GLOBAL eval was not an allowed global by default"
        ("eval", r"it pickles eval\)"),
    ],
)
def test_a_reduce_payload_is_refused_unexecuted(r3d10_file, tmp_path, call, named) -> None:
    container = torch.load(r3d10_file(), weights_only=True)
    marker = tmp_path / "payload-ran"
    path = tmp_path / "payload.pth"
    torch.save({**container, "args": Payload(call, marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match=named + r".*checkpoint resave --trust"):
        load_checkpoint(path)
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00not a zip or a pickle" * 50)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(junk)
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "absent.pth")


def test_container_without_state_dict_lists_its_fields(tmp_path) -> None:
    path = tmp_path / "empty.pth"
    torch.save({"epoch": 1, "optimizer": {"lr": 0.1}}, path)
    with pytest.raises(UnrecognisedCheckpointError, match="top-level fields are: epoch, optimizer"):
        load_checkpoint(path)


def test_unknown_layout_lists_the_known_ones(tmp_path) -> None:
    path = tmp_path / "vit.pth"
    torch.save({"blocks.0.attn.qkv.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(UnrecognisedCheckpointError, match="known layouts: .*p3d_port"):
        load_checkpoint(path)
