"""Public-checkpoint parity: each fixture's file, rebuilt and saved, loads through
`load_checkpoint` and reproduces the reference code's logits (tests/backbones/parity/README.md)."""

from __future__ import annotations

import pytest
import torch

from backbones import load_checkpoint
from backbones.checkpoints import detect_layout, extract_state_dict
from tests.backbones.parity_recipe import (
    PARITY_DIR,
    case_input,
    load_case,
    rebuild_tensor,
    write_checkpoint,
)

# case                   -> (model the file must be read as, label set the file implies)
CASES = {
    "hara2018_resnet18": ("r3d_18", "kinetics400"),
    "hara2018_resnext101": ("resnext3d_101", "kinetics400"),
    "hara2020_resnet50": ("r3d_50", "kinetics700"),
    "hara2020_densenet121": ("densenet3d_121", "kinetics400"),
    "p3d63": ("p3d_63", "kinetics400"),
    "slowfast_x3d_m": ("x3d_m", "kinetics400"),
    "pytorchvideo_x3d_m": ("x3d_m", "kinetics400"),
    "vov3d_m": ("vov3d_m", "kinetics400"),
    "tpn_slowonly_r50": ("tpn_slowonly_r50", "kinetics400"),
}


def test_every_bundled_fixture_is_covered() -> None:
    assert {p.stem for p in PARITY_DIR.glob("*.json")} == set(CASES)


def test_recipe_matches_the_contract_test_vectors() -> None:
    """The README's section 1.5 vectors, before any model is involved."""
    tensor = rebuild_tensor("module.bn1.running_var", [64], "float32", 1001, 2**0.5)
    assert tensor[:3].tolist() == [1.3523324728012085, 0.554955244064331, 1.078832745552063]
    fc = rebuild_tensor("module.fc.weight", [400, 512], "float32", 1001, 2**0.5)
    assert fc.double().sum().item() == pytest.approx(-15.611140, rel=1e-7)
    x = case_input(load_case("hara2018_resnet18"))
    assert x.flatten()[:3].tolist() == [
        -0.5369701324394869,
        0.5427489385754858,
        -0.8687397424537482,
    ]


@pytest.fixture(scope="module", params=sorted(CASES))
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    case = load_case(request.param)
    path = write_checkpoint(case, tmp_path_factory.mktemp("ckpt") / f"{request.param}.pth")
    model, spec = load_checkpoint(path)
    return request.param, case, model, spec, path


def _unused_parameters(path) -> int:
    """Learnable elements of the file that its layout declares unused at inference
    (auxiliary training heads): the model does not build them."""
    state_dict, _ = extract_state_dict(torch.load(path, weights_only=True))
    layout = detect_layout(state_dict)
    return sum(
        t.numel()
        for k, t in state_dict.items()
        if layout.convert_key(k) is None
        and not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )


def _scaled_error(ours: torch.Tensor, expected: torch.Tensor) -> float:
    return (ours - expected).abs().max().item() / max(1.0, expected.abs().max().item())


def test_file_is_read_as_the_right_model(loaded) -> None:
    name, case, model, spec, path = loaded
    expected_model, expected_labels = CASES[name]
    assert spec.backbone == expected_model
    assert spec.num_classes == case["num_classes"]
    assert spec.label_set == expected_labels and len(spec.labels) == case["num_classes"]
    used = sum(p.numel() for p in model.parameters())
    assert used + _unused_parameters(path) == case["num_parameters"]
    assert not model.training


def test_float64_logits_match_reference(loaded) -> None:
    _, case, model, _, _ = loaded
    expected = torch.tensor(case["expected_logits"], dtype=torch.float64)
    with torch.no_grad():
        logits = model.double()(case_input(case))
    assert _scaled_error(logits, expected) <= 1e-6
    assert logits.topk(5).indices.tolist() == case["top5"]


def test_float32_logits_match_reference(loaded) -> None:
    _, case, model, _, _ = loaded
    expected = torch.tensor(case["expected_logits"], dtype=torch.float64)
    with torch.no_grad():
        logits = model.float()(case_input(case).float()).double()
    assert _scaled_error(logits, expected) <= 1e-3


def test_model_name_and_class_count_are_checked_against_the_file(loaded) -> None:
    name, case, _, _, path = loaded
    expected_model, _ = CASES[name]
    model, _ = load_checkpoint(path, model=expected_model, num_classes=case["num_classes"])
    assert model.spec.backbone == expected_model


def test_embedding_feeds_the_classifier(loaded) -> None:
    _, case, model, spec, _ = loaded
    x = case_input(case).float()[:1]
    model.float()
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (1, spec.embedding_dim)
        assert torch.allclose(model.forward_head(features), model(x))
