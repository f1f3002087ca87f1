"""The store: immutable numbered versions, checksums, aliases, crash-safe and concurrent
publishing, and names that cannot escape the store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from model_store import (
    AliasNotFoundError,
    IntegrityError,
    InvalidNameError,
    ModelNotFoundError,
    ModelStore,
    PublishError,
    VersionInUseError,
    VersionNotFoundError,
)
from model_store.store import parse_model_ref
from tests.model_store.conftest import make_draft

ROOT = Path(__file__).resolve().parents[2]


def publish(store: ModelStore, source: Path, name: str = "clf", **kwargs):
    return store.publish(name, make_draft(**kwargs), {"model.onnx": source})


def test_publish_then_list_and_show(tmp_path, artifact_file) -> None:
    store = ModelStore(tmp_path / "store")
    first = publish(store, artifact_file, labels=("run", "jump", "sit"))
    second = publish(store, artifact_file)
    assert (first.version, second.version) == (1, 2)
    assert store.list_models() == ["clf"] and store.list_versions("clf") == [1, 2]
    shown = store.read_manifest("clf", 1)
    assert shown == first and shown.spec.labels == ("run", "jump", "sit")
    directory = store.version_dir("clf", 1)
    assert sorted(p.name for p in directory.iterdir()) == [
        "labels.txt",
        "manifest.json",
        "model.onnx",
    ]
    assert (directory / "labels.txt").read_text() == "run\njump\nsit\n"
    assert shown.files["model.onnx"].bytes == artifact_file.stat().st_size
    assert not os.access(directory / "model.onnx", os.W_OK) or os.geteuid() == 0
    assert (directory / "model.onnx").stat().st_mode & 0o222 == 0  # published files are read-only
    on_disk = json.loads((directory / "manifest.json").read_text())
    assert on_disk["schema_version"] == 2 and on_disk["name"] == "clf" and on_disk["version"] == 1


def test_resolve_prefers_version_then_alias_then_stable_then_newest(
    tmp_path, artifact_file
) -> None:
    store = ModelStore(tmp_path / "store")
    for _ in range(3):
        publish(store, artifact_file)
    assert store.resolve("clf").version == 3
    store.promote("clf", 2)
    assert store.resolve("clf").version == 2
    store.promote("clf", 1, alias="canary")
    assert store.resolve("clf", alias="canary").version == 1
    assert store.resolve("clf", version=3).version == 3
    assert store.resolve().version == 2  # the only model is the default
    with pytest.raises(AliasNotFoundError, match="no alias 'beta'"):
        store.resolve("clf", alias="beta")


def test_promote_and_rollback_walk_the_alias_history(tmp_path, artifact_file) -> None:
    store = ModelStore(tmp_path / "store")
    for _ in range(4):
        publish(store, artifact_file)
    for version in (1, 2, 3):
        store.promote("clf", version)
    assert store.aliases("clf")["stable"].history == [1, 2]
    assert store.rollback("clf").version == 2
    store.promote("clf", 4)
    store.delete("clf", 3)
    # History is [1, 2]; 2 is still there, so roll back to it, then to 1, then nothing left.
    assert store.rollback("clf").version == 2
    assert store.rollback("clf").version == 1
    with pytest.raises(AliasNotFoundError, match="no earlier version"):
        store.rollback("clf")


def test_rollback_skips_versions_deleted_since(tmp_path, artifact_file) -> None:
    store = ModelStore(tmp_path / "store")
    for _ in range(3):
        publish(store, artifact_file)
    store.promote("clf", 1)
    store.promote("clf", 2)
    store.promote("clf", 3)
    store.promote("clf", 1, alias="canary")  # keeps 1 alive
    store.delete("clf", 2)
    assert store.rollback("clf").version == 1


def test_delete_is_refused_while_an_alias_points_at_the_version(tmp_path, artifact_file) -> None:
    store = ModelStore(tmp_path / "store")
    publish(store, artifact_file)
    publish(store, artifact_file)
    store.promote("clf", 1, alias="canary")
    with pytest.raises(VersionInUseError, match="canary"):
        store.delete("clf", 1)
    store.delete("clf", 2)
    assert store.list_versions("clf") == [1]
    assert publish(store, artifact_file).version == 3  # a deleted number is never reused
    with pytest.raises(VersionNotFoundError, match="no version 2"):
        store.read_manifest("clf", 2)


def test_tampered_or_truncated_files_are_refused_by_name(tmp_path, artifact_file) -> None:
    store = ModelStore(tmp_path / "store")
    publish(store, artifact_file)
    publish(store, artifact_file)
    path = store.version_dir("clf", 2) / "model.onnx"
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"2/model.onnx: sha256 .*modified after publishing"):
        store.verify("clf", 2)
    path.write_bytes(bytes(data[:500]))
    with pytest.raises(IntegrityError, match=r"model.onnx: 500 bytes, .* \(truncated\?\)"):
        store.verify("clf", 2)
    assert store.verify("clf", 1).version == 1  # other versions are unaffected
    (store.version_dir("clf", 1) / "model.onnx").unlink()
    with pytest.raises(IntegrityError, match="model.onnx: missing"):
        store.verify("clf", 1)


def test_a_rewritten_manifest_is_noticed(tmp_path, artifact_file) -> None:
    store = ModelStore(tmp_path / "store")
    publish(store, artifact_file)
    path = store.version_dir("clf", 1) / "manifest.json"
    path.chmod(0o644)
    path.write_text(path.read_text().replace('"version": 1', '"version": 7'))
    with pytest.raises(IntegrityError, match="says clf version 7, stored as 1"):
        store.read_manifest("clf", 1)


@pytest.mark.parametrize(
    "name", ["../evil", "a/b", "a\\b", ".hidden", "", "x" * 65, "..", "a..b", "na me", "é"]
)
def test_names_cannot_escape_or_hide(tmp_path, artifact_file, name: str) -> None:
    store = ModelStore(tmp_path / "store")
    with pytest.raises(InvalidNameError):
        publish(store, artifact_file, name=name)
    assert not (tmp_path / "evil").exists() and list(tmp_path.glob("**/model.onnx")) == [
        artifact_file
    ]


@pytest.mark.parametrize("version", ["0", "-1", "1/../2", "abc", "1.5", "١"])
def test_versions_are_positive_integers(tmp_path, artifact_file, version: str) -> None:
    store = ModelStore(tmp_path / "store")
    publish(store, artifact_file)
    with pytest.raises(InvalidNameError):
        store.read_manifest("clf", version)


def test_aliases_and_refs_are_validated(tmp_path, artifact_file) -> None:
    store = ModelStore(tmp_path / "store")
    publish(store, artifact_file)
    for alias in ("Stable", "../x", "1", "a" * 33):
        with pytest.raises(InvalidNameError):
            store.promote("clf", 1, alias=alias)
    assert parse_model_ref("x3d_m") == ("x3d_m", None, None)
    assert parse_model_ref("x3d_m@3") == ("x3d_m", 3, None)
    assert parse_model_ref("x3d_m@canary") == ("x3d_m", None, "canary")
    with pytest.raises(InvalidNameError):
        parse_model_ref("../x@1")


def test_publish_refuses_reserved_or_missing_files(tmp_path, artifact_file) -> None:
    store = ModelStore(tmp_path / "store")
    with pytest.raises(PublishError, match="reserved"):
        store.publish("clf", make_draft(), {"manifest.json": artifact_file})
    with pytest.raises(PublishError, match="no file: model.onnx"):
        store.publish("clf", make_draft(), {"other.onnx": artifact_file})
    assert store.list_models() == [] and not store.root.exists()


def test_unknown_models_and_default(tmp_path, artifact_file) -> None:
    store = ModelStore(tmp_path / "store")
    with pytest.raises(ModelNotFoundError, match="store is empty"):
        store.resolve("clf")
    publish(store, artifact_file, name="a")
    publish(store, artifact_file, name="b")
    assert store.default_model() is None  # two models, none chosen
    store.set_default_model("b")
    assert store.default_model() == "b" and store.resolve().name == "b"
    with pytest.raises(ModelNotFoundError, match=r"no model 'c' in the store \(a, b\)"):
        store.set_default_model("c")


PUBLISHER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import model_store.store as store_module
    from model_store import ModelStore
    from tests.model_store.conftest import make_draft

    root, source, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    if mode == "hang-before-rename":
        real_rename = store_module.os.rename
        def hang(src, dst):
            Path(root, "ready").write_text("staged")
            time.sleep(600)
        store_module.os.rename = hang
    elif mode == "wait":
        while not Path(root, "go").exists():
            time.sleep(0.005)
    manifest = ModelStore(root).publish("clf", make_draft(), {"model.onnx": source})
    print(manifest.version)
    """
)


def _publisher(root: Path, source: Path, mode: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, str(root), str(source), mode],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_publish_killed_before_its_rename_leaves_nothing_visible(tmp_path, artifact_file) -> None:
    root = tmp_path / "store"
    root.mkdir()
    process = _publisher(root, artifact_file, "hang-before-rename")
    deadline = time.monotonic() + 60
    while not (root / "ready").exists():
        assert process.poll() is None and time.monotonic() < deadline, "publisher never staged"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    store = ModelStore(root)
    assert store.list_versions("clf") == []
    assert [p.name for p in (root / "clf").iterdir() if p.name.startswith(".staging-")]
    # The next publisher takes version 1 and clears the dead one's staging directory.
    assert publish(store, artifact_file).version == 1
    assert not [p for p in (root / "clf").iterdir() if p.name.startswith(".staging-")]


def test_concurrent_publishers_get_distinct_versions(tmp_path, artifact_file) -> None:
    root = tmp_path / "store"
    root.mkdir()
    processes = [_publisher(root, artifact_file, "wait") for _ in range(4)]
    time.sleep(0.5)
    (root / "go").write_text("")
    versions = sorted(int(p.communicate(timeout=120)[0]) for p in processes)
    assert versions == [1, 2, 3, 4]
    store = ModelStore(root)
    assert store.list_versions("clf") == [1, 2, 3, 4]
    assert all(store.verify("clf", v).version == v for v in versions)
