"""`actserve export`, `actserve models …` and `actserve export-triton`, as a user runs them."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from typer.testing import CliRunner

from actserve.cli import app
from backbones import create_model
from model_store import ModelStore
from tests.backbones.foreign_layouts import to_hara
from tests.model_store.conftest import make_draft

runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A ResNet-10 in the 2018 Hara layout (Kinetics-400 head, shortcut A)."""
    torch.manual_seed(0)
    model = create_model("r3d_10", num_classes=400, shortcut="A")
    path = tmp_path_factory.mktemp("ckpt") / "resnet-10-kinetics.pth"
    torch.save({"arch": "resnet-10", "state_dict": to_hara(model.state_dict(), year=2018)}, path)
    return path


def test_export_a_public_checkpoint_and_promote_it(checkpoint, tmp_path) -> None:
    store = tmp_path / "store"
    result = runner.invoke(
        app,
        [
            "export",
            "r3d_10",
            "--checkpoint",
            str(checkpoint),
            "--store",
            str(store),
            "--alias",
            "stable",
            "--name",
            "r3d10-k400",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "published r3d10-k400 version 1, alias 'stable'" in result.output
    manifest = ModelStore(store).resolve("r3d10-k400", alias="stable")
    assert manifest.trained and manifest.backbone == "r3d_10"
    source = manifest.source_checkpoint
    assert source.file_name == checkpoint.name and source.layout == "hara2018_resnet"
    assert source.sha256 == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert manifest.spec.label_set == "kinetics400" and manifest.spec.recipe.pixel_scale == 255.0
    assert [a.file for a in manifest.artifacts] == ["model.onnx"]


def test_export_random_weights_says_so_loudly(tmp_path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("left\nright\nup\n")
    store = tmp_path / "store"
    result = runner.invoke(
        app,
        [
            "export",
            "r3d_10",
            "--num-classes",
            "3",
            "--labels",
            str(labels),
            "--store",
            str(store),
            "--format",
            "torchscript",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "RANDOM weights" in result.output
    manifest = ModelStore(store).resolve("r3d_10")
    assert manifest.trained is False and manifest.spec.labels == ("left", "right", "up")
    listed = runner.invoke(app, ["models", "list", "--store", str(store)])
    assert "NO (random weights)" in listed.output


def test_export_refuses_what_does_not_fit(checkpoint, tmp_path) -> None:
    store = str(tmp_path / "store")
    wrong_model = runner.invoke(
        app, ["export", "r3d_18", "--checkpoint", str(checkpoint), "--store", store]
    )
    assert wrong_model.exit_code == 1 and "holds a r3d_10" in wrong_model.output
    wrong_labels = runner.invoke(app, ["export", "r3d_10", "--labels", "ucf101", "--store", store])
    assert (
        wrong_labels.exit_code == 1
        and "101 names but the model has 700 classes" in wrong_labels.output
    )
    assert not (tmp_path / "store").exists()


def test_export_refuses_bf16_where_the_cpu_cannot_measure_it(tmp_path) -> None:
    from exporters.openvino import cpu_bf16, openvino_version

    if openvino_version() is not None and cpu_bf16():
        pytest.skip("this CPU computes bf16: the export would run (tests/exporters covers it)")
    store = tmp_path / "store"
    args = ["export", "r3d_10", "--precision", "bf16", "--store", str(store)]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 1 and "AVX512-BF16 or AMX" in refused.output
    two_stream = runner.invoke(app, [*args, "--two-stream"])
    assert two_stream.exit_code == 1 and "not bf16" in two_stream.output
    assert not store.exists()


def test_export_two_streams_and_show_them(checkpoint, tmp_path) -> None:
    """--two-stream: the RGB stream from its file, a random flow stream beside it."""
    store = tmp_path / "store"
    common = ["--store", str(store), "--format", "torchscript", "--name", "r3d10-two"]
    rgb_as_flow = runner.invoke(
        app, ["export", "r3d_10", "--flow-checkpoint", str(checkpoint), *common]
    )
    assert rgb_as_flow.exit_code == 1 and "holds a rgb network" in rgb_as_flow.output
    bad_weights = runner.invoke(
        app, ["export", "r3d_10", "--two-stream", "--fusion-weights", "1,0", *common]
    )
    assert bad_weights.exit_code == 1 and "must be positive" in bad_weights.output
    result = runner.invoke(
        app,
        ["export", "r3d_10", "--checkpoint", str(checkpoint), "--two-stream", *common],
    )
    assert result.exit_code == 0, result.output
    assert "RANDOM flow weights" in result.output
    assert "rgb.model.ts" in result.output and "flow.model.ts" in result.output
    manifest = ModelStore(store).resolve("r3d10-two")
    assert manifest.fusion.weights == {"rgb": 1.0, "flow": 1.5} and not manifest.trained
    assert manifest.stream("rgb").trained and not manifest.stream("flow").trained
    assert manifest.stream("flow").spec.recipe.in_channels == 2
    shown = runner.invoke(app, ["models", "show", "r3d10-two", "--store", str(store)])
    assert shown.exit_code == 0, shown.output
    assert "flow stream" in shown.output and "TV-L1 bound 20 px, 17 frames" in shown.output


def test_models_commands_manage_versions(exported, tmp_path) -> None:
    _, _, store, manifest = exported
    root = str(store.root)
    name = manifest.name
    shown = runner.invoke(app, ["models", "show", f"{name}@stable", "--store", root, "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["version"] == manifest.version
    table = runner.invoke(app, ["models", "show", name, "--store", root])
    assert "integrity" in table.output and "ok" in table.output
    refused = runner.invoke(app, ["models", "delete", name, str(manifest.version), "--store", root])
    assert refused.exit_code == 1 and "promote another version first" in refused.output
    missing = runner.invoke(app, ["models", "promote", name, "99", "--store", root])
    assert missing.exit_code == 1 and "has no version 99" in missing.output
    nothing = runner.invoke(app, ["models", "rollback", name, "--alias", "canary", "--store", root])
    assert nothing.exit_code == 1 and "no alias 'canary'" in nothing.output


def test_models_list_json_is_the_listing_for_scripts(tmp_path) -> None:
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"onnx" * 100)
    store = ModelStore(tmp_path / "store")
    for _ in range(2):
        store.publish("clf", make_draft(labels=("a", "b", "c")), {"model.onnx": artifact})
    store.publish("other", make_draft(), {"model.onnx": artifact})
    store.promote("clf", 1, "canary")
    store.promote("clf", 2, "stable")
    store.set_default_model("clf")
    root = str(store.root)
    listed = runner.invoke(app, ["models", "list", "--json", "--store", root])
    assert listed.exit_code == 0, listed.output
    body = json.loads(listed.stdout)
    assert body["default_model"] == "clf" and body["store"] == root
    clf, other = body["models"]
    assert (clf["name"], clf["default"], other["default"]) == ("clf", True, False)
    assert clf["aliases"] == {"canary": 1, "stable": 2} and clf["problems"] == []
    first, second = clf["versions"]
    assert (first["version"], first["aliases"], second["aliases"]) == (1, ["canary"], ["stable"])
    assert second["state"] == "available" and second["backbone"] == "r3d_10"
    assert second["num_classes"] == 3 and second["embedding_dim"] == 8 and second["trained"]
    assert second["precision"] == "fp32" and second["default_profile"] == "accurate"

    # A damaged version is listed as broken, the rest as before; the command exits 1.
    (store.version_dir("clf", 1) / "manifest.json").chmod(0o644)
    (store.version_dir("clf", 1) / "manifest.json").write_text("{")
    damaged = runner.invoke(app, ["models", "list", "--json", "--store", root])
    assert damaged.exit_code == 1
    clf, other = json.loads(damaged.stdout)["models"]
    broken, kept = clf["versions"]
    assert broken["state"] == "broken" and "clf/1/manifest.json: not a valid" in broken["error"]
    assert broken["aliases"] == ["canary"] and kept["state"] == "available"
    assert clf["problems"] == [broken["error"]] and other["problems"] == []


def test_models_show_fails_on_integrity_and_reindex_records_old_versions(tmp_path) -> None:
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"onnx" * 100)
    store = ModelStore(tmp_path / "store")
    for _ in range(2):
        store.publish("clf", make_draft(labels=("a", "b", "c")), {"model.onnx": artifact})
    root = str(store.root)
    (store.root / "clf" / "index.json").unlink()  # a store published before the index
    old = runner.invoke(app, ["models", "show", "clf@1", "--store", root])
    assert old.exit_code == 0 and "the manifest itself is unverified" in old.output
    assert "actserve models reindex clf" in old.output
    manifest = store.version_dir("clf", 2) / "manifest.json"
    manifest.chmod(0o644)
    manifest.write_text(manifest.read_text().replace('"a",', '"b",', 1).replace('"b"\n', '"a"\n'))
    reindexed = runner.invoke(app, ["models", "reindex", "--store", root])
    assert reindexed.exit_code == 1, reindexed.output
    assert "clf: recorded 1" in reindexed.output
    assert "clf version 2 not recorded: " in reindexed.output
    assert "class 0 is 'a' here and 'b' in the manifest" in reindexed.output
    ok = runner.invoke(app, ["models", "show", "clf@1", "--store", root])
    assert ok.exit_code == 0 and "ok (the manifest matches the store's index" in ok.output
    for args in (["clf@2"], ["clf@2", "--json"]):
        failed = runner.invoke(app, ["models", "show", *args, "--store", root])
        assert failed.exit_code == 1, failed.output
        assert "integrity check failed: " in failed.output and "not in index.json" in failed.output
    (store.root / "clf" / "aliases.json").write_text("{")
    listed = runner.invoke(app, ["models", "list", "--store", root])
    assert listed.exit_code == 1 and "BROKEN" in listed.output
    assert "aliases.json: not a valid alias file: Invalid JSON" in listed.output


def test_export_triton_from_the_cli(exported, tmp_path) -> None:
    _, _, store, manifest = exported
    repo = tmp_path / "repo"
    result = runner.invoke(
        app,
        [
            "export-triton",
            "--store",
            str(store.root),
            "--model",
            f"{manifest.name}@stable",
            "--out",
            str(repo),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (repo / manifest.name / "config.pbtxt").is_file()
    assert (repo / manifest.name / str(manifest.version) / "model.onnx").is_file()
    bad = runner.invoke(
        app, ["export-triton", "--store", str(store.root), "--model", "../x", "--out", str(repo)]
    )
    assert bad.exit_code == 1 and "invalid model name" in bad.output
