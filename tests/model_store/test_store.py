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
    CorruptFileError,
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
    assert on_disk["schema_version"] == 3 and on_disk["name"] == "clf" and on_disk["version"] == 1


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


def _edit(path: Path, old: str, new: str) -> None:
    """Rewrite a published (read-only) file the way a careless or hostile hand would."""
    path.chmod(0o644)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_an_edited_manifest_is_refused_by_the_index(tmp_path, artifact_file) -> None:
    store = ModelStore(tmp_path / "store")
    publish(store, artifact_file, labels=("run", "jump", "sit"))
    assert store.is_indexed("clf", 1) and store.verify("clf", 1).spec.labels[0] == "run"
    manifest = store.version_dir("clf", 1) / "manifest.json"
    # Swap two labels in the manifest only: labels.txt keeps its digest.
    _edit(manifest, '"run",\n      "jump"', '"jump",\n      "run"')
    with pytest.raises(IntegrityError, match=r"1/manifest.json: sha256 .* index.json recorded at"):
        store.verify("clf", 1)
    assert store.read_manifest("clf", 1).spec.labels[0] == "jump"  # reading does not verify
    # Whitespace alone is an edit too: the index hashes the bytes that were published.
    _edit(manifest, '"jump",\n      "run"', '"run",\n      "jump"')
    assert store.verify("clf", 1)
    manifest.write_text(manifest.read_text() + "\n")
    with pytest.raises(IntegrityError, match="edited after publishing"):
        store.verify("clf", 1)


def test_swapped_labels_are_refused_wherever_they_are_swapped(tmp_path, artifact_file) -> None:
    store = ModelStore(tmp_path / "store")
    for _ in range(2):
        publish(store, artifact_file, labels=("run", "jump", "sit"))
    _edit(store.version_dir("clf", 1) / "labels.txt", "run\njump", "jump\nrun")
    with pytest.raises(IntegrityError, match=r"1/labels.txt: sha256 .*\(modified after publishing"):
        store.verify("clf", 1)
    # Without the index (a store from before it), labels swapped in the manifest still
    # disagree with labels.txt.
    (store.root / "clf" / "index.json").unlink()
    _edit(
        store.version_dir("clf", 2) / "manifest.json",
        '"jump",\n      "sit"',
        '"sit",\n      "jump"',
    )
    with pytest.raises(IntegrityError, match=r"class 1 is 'jump' here and 'sit' in the manifest"):
        store.verify("clf", 2)


def test_a_version_copied_in_by_hand_is_refused(tmp_path, artifact_file) -> None:
    store = ModelStore(tmp_path / "store")
    publish(store, artifact_file)
    copy = store.root / "clf" / "2"
    copy.mkdir()
    for path in store.version_dir("clf", 1).iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    _edit(copy / "manifest.json", '"version": 1', '"version": 2')
    assert store.list_versions("clf") == [1, 2]
    with pytest.raises(IntegrityError, match=r"2/manifest.json: not in index.json, .* reindex clf"):
        store.verify("clf", 2)


def test_an_artifact_without_a_digest_is_refused(tmp_path, artifact_file) -> None:
    store = ModelStore(tmp_path / "store")
    publish(store, artifact_file)
    (store.root / "clf" / "index.json").unlink()  # only the manifest vouches for itself
    manifest = store.version_dir("clf", 1) / "manifest.json"
    _edit(manifest, '"model.onnx": {', '"other.bin": {')
    with pytest.raises(IntegrityError, match="model.onnx: an artifact the manifest has no sha256"):
        store.verify("clf", 1)


def test_a_store_without_an_index_loads_unverified_until_reindexed(
    tmp_path, artifact_file, caplog
) -> None:
    store = ModelStore(tmp_path / "store")
    for _ in range(3):
        publish(store, artifact_file)
    (store.root / "clf" / "index.json").unlink()  # as published before the store kept one
    store.delete("clf", 3)
    with caplog.at_level("WARNING", logger="model_store"):
        assert store.verify("clf", 1).version == 1
    assert "manifest itself is unverified; `actserve models reindex clf`" in caplog.text
    assert store.manifest_index("clf") is None and not store.is_indexed("clf", 1)
    # A new publish indexes itself and leaves the older versions loadable, still unverified.
    assert publish(store, artifact_file).version == 4
    assert store.is_indexed("clf", 4) and not store.is_indexed("clf", 2)
    assert store.verify("clf", 2).version == 2
    # Version 2 broke meanwhile: reindex records only what still matches its digests.
    data = store.version_dir("clf", 2) / "model.onnx"
    data.chmod(0o644)
    data.write_bytes(b"x")
    added, refused = store.reindex("clf")
    assert added == [1] and list(refused) == [2] and "truncated" in refused[2]
    assert store.is_indexed("clf", 1) and store.verify("clf", 1)
    with pytest.raises(IntegrityError, match="2/manifest.json: not in index.json"):
        store.verify("clf", 2)
    # A recorded manifest is never re-recorded: an edit stays a failure.
    _edit(store.version_dir("clf", 1) / "manifest.json", '"trained": true', '"trained": false')
    assert store.reindex("clf") == ([], {2: refused[2]})
    with pytest.raises(IntegrityError, match="edited after publishing"):
        store.verify("clf", 1)


def test_delete_drops_the_version_from_the_index(tmp_path, artifact_file) -> None:
    store = ModelStore(tmp_path / "store")
    publish(store, artifact_file)
    publish(store, artifact_file)
    store.delete("clf", 1)
    assert set(store.manifest_index("clf").manifests) == {2}


def test_labels_with_line_breaks_cannot_be_published(tmp_path, artifact_file) -> None:
    store = ModelStore(tmp_path / "store")
    with pytest.raises(PublishError, match=r"label 1 \('a\\nb'\) has a line break"):
        publish(store, artifact_file, labels=("run", "a\nb", "sit"))


BROKEN_FILES = {
    "manifest: not JSON": ("clf/1/manifest.json", '{"name": "clf",', "Invalid JSON"),
    "manifest: a list": ("clf/1/manifest.json", "[]", "Input should be an object"),
    "manifest: wrong field": ("clf/1/manifest.json", '{"backbone": 3}', "backbone: "),
    "manifest: label set": ("clf/1/manifest.json", None, "spec.label_set: Input should be"),
    "manifest: binary": ("clf/1/manifest.json", "\udcff\udcfe", "Invalid JSON"),
    "index": ("clf/index.json", '{"manifests": {"one": 1}}', "manifests.one.[key]"),
    "aliases: not JSON": ("clf/aliases.json", '{"stable": {"version": 1', "Invalid JSON"),
    "aliases: a list": ("clf/aliases.json", "[1, 2]", "Input should be an object"),
    "aliases: wrong type": ("clf/aliases.json", '{"stable": {"version": "x"}}', "stable.version"),
    "store.json": ("store.json", '{"default_model": ', "Invalid JSON"),
    ".last_version": ("clf/.last_version", "three", "'three', not a version number"),
}


@pytest.mark.parametrize("case", BROKEN_FILES)
def test_an_unparseable_store_file_is_a_typed_error_naming_it(
    tmp_path, artifact_file, case: str
) -> None:
    store = ModelStore(tmp_path / "store")
    publish(store, artifact_file)
    store.promote("clf", 1)
    store.set_default_model("clf")
    relative, text, expected = BROKEN_FILES[case]
    path = store.root / relative
    path.chmod(0o644)
    if text is None:  # a label set that is not a name
        raw = json.loads(path.read_text())
        raw["spec"] |= {"labels": None, "label_set": ["kinetics400"]}
        text = json.dumps(raw)
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    operations = {
        "manifest": lambda: store.verify("clf", 1),
        "index": lambda: store.verify("clf", 1),
        "aliases": lambda: store.resolve("clf"),
        "store.json": store.default_model,
        ".last_version": lambda: publish(store, artifact_file),
    }
    with pytest.raises(CorruptFileError) as caught:
        operations[case.split(":")[0]]()
    message = str(caught.value)
    assert message.startswith(str(path)) and expected in message, message
    assert "pydantic" not in message and "Traceback" not in message
    assert isinstance(caught.value, IntegrityError)  # what the service already maps


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
