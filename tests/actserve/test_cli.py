"""The `actserve` command line, run as a user runs it."""

from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from actserve.cli import app
from backbones import create_model, list_models
from tests.backbones.foreign_layouts import to_hara, to_slowfast

runner = CliRunner()


def test_zoo_lists_every_model_as_json() -> None:
    result = runner.invoke(app, ["zoo", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [row["model"] for row in rows] == list_models()
    r50 = next(row for row in rows if row["model"] == "r3d_50")
    assert r50["params"] == 47_633_276 and r50["input"] == [3, 16, 112, 112]


def test_inspect_reports_family_model_classes_and_strict_load(tmp_path) -> None:
    model = create_model("r3d_10", num_classes=400, shortcut="A")
    path = tmp_path / "resnet-10-kinetics.pth"
    torch.save(
        {"epoch": 1, "arch": "resnet-10", "state_dict": to_hara(model.state_dict(), year=2018)},
        path,
    )
    result = runner.invoke(app, ["checkpoint", "inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["layout"] == "hara2018_resnet" and report["model"] == "r3d_10"
    assert report["variant"]["shortcut"] == "A" and report["num_classes"] == 400
    assert report["label_set"] == "kinetics400" and report["strict_load"] == "ok"
    assert report["arch"] == "resnet-10" and report["num_parameters"] == sum(
        p.numel() for p in model.parameters()
    )


def test_inspect_names_the_models_that_share_the_file_tensors(tmp_path) -> None:
    path = tmp_path / "x3d_xs.pyth"
    torch.save({"model_state": to_slowfast(create_model("x3d_xs").state_dict())}, path)
    result = runner.invoke(app, ["checkpoint", "inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert "x3d_m" in result.output and "same tensors as x3d_xs, x3d_s" in result.output
    report = json.loads(runner.invoke(app, ["checkpoint", "inspect", str(path), "--json"]).output)
    assert report["alternatives"] == ["x3d_xs", "x3d_s"]


def test_inspect_fails_with_the_offending_keys(tmp_path) -> None:
    sd = to_hara(create_model("r3d_10", num_classes=400).state_dict(), year=2020)
    del sd["layer4.0.conv2.weight"]
    path = tmp_path / "broken.pth"
    torch.save({"state_dict": sd}, path)
    result = runner.invoke(app, ["checkpoint", "inspect", str(path)])
    assert result.exit_code == 1
    assert "stages.3.0.conv2.weight" in result.output


def test_resave_needs_explicit_trust(tmp_path) -> None:
    result = runner.invoke(app, ["checkpoint", "resave", str(tmp_path / "a"), str(tmp_path / "b")])
    assert result.exit_code == 2 and "--trust" in result.output
