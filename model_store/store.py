"""A filesystem model store: immutable, checksummed, numbered versions with movable aliases.

    <root>/
      store.json                  {"default_model": "r3d_18"}
      <model>/
        index.json                sha256 and size of each version's manifest.json, from publish
        aliases.json              {"stable": {"version": 3, "history": [1, 2]}}
        1/  manifest.json  model.onnx  model.ts  labels.txt
        2/  ...
        .staging-<pid>-<id>/      a publish in progress (or the debris of a crashed one)
        .lock                     serialises publishers and alias writers of this model

A publish stages every file in a hidden directory on the same filesystem, fsyncs it, then
takes the model's lock, picks the next version number and renames the directory into place:
readers see either no version or a whole one. Versions never change after that; the store
refuses to load a version whose files no longer match the sha256 its manifest recorded, whose
manifest no longer matches the sha256 the model's index recorded (under the same lock, at
publish), or whose labels.txt disagrees with its manifest's labels. Versions published before
the store kept an index still load, with a warning that their manifests are unverified, until
`reindex` records them.

The index catches edits, bit rot and versions copied in by hand; it is not a signature: whoever
can rewrite a manifest can rewrite the index too (serve a read-only store for that).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from model_store.errors import (
    AliasNotFoundError,
    CorruptFileError,
    IntegrityError,
    InvalidNameError,
    ModelNotFoundError,
    PublishError,
    StoreError,
    VersionInUseError,
    VersionNotFoundError,
)
from model_store.manifest import (
    LABELS_FILE,
    MANIFEST_FILE,
    FileDigest,
    Manifest,
    ManifestDraft,
)

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ALIAS_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,31}")
DEFAULT_ALIAS = "stable"
LOCK_TIMEOUT_S = 120.0
INDEX_FILE = "index.json"
ALIASES_FILE = "aliases.json"
STORE_FILE = "store.json"
LAST_VERSION_FILE = ".last_version"

logger = logging.getLogger("model_store")


def check_name(name: str) -> str:
    """A model name: letters, digits, '_', '.', '-'; no separators, no leading dot, ≤ 64."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise InvalidNameError(
            f"invalid model name {name!r}: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not ALIAS_PATTERN.fullmatch(alias):
        raise InvalidNameError(
            f"invalid alias {alias!r}: use 1-32 lower-case letters, digits, '_' or '-', "
            "starting with a letter"
        )
    return alias


def check_version(version: int | str) -> int:
    text = str(version)
    if not text.isascii() or not text.isdigit() or len(text) > 9 or int(text) < 1:
        raise InvalidNameError(f"invalid version {version!r}: versions are integers from 1")
    return int(text)


def parse_model_ref(ref: str) -> tuple[str, int | None, str | None]:
    """'name', 'name@3' or 'name@stable' -> (name, version, alias)."""
    name, _, target = ref.partition("@")
    check_name(name)
    if not target:
        return name, None, None
    if target.isdigit():
        return name, check_version(target), None
    return name, None, check_alias(target)


class AliasState(BaseModel):
    version: int
    #: Earlier targets, oldest first; rollback returns to the last one.
    history: list[int] = []


class ManifestIndex(BaseModel):
    """The sha256 and size of each published manifest of one model. A manifest vouches for
    its version's files but nothing vouched for the manifest: an edited one (labels swapped,
    another recipe) loaded silently. The index, written under the model's lock at publish,
    makes an edited manifest as refusable as an edited artifact."""

    model_config = ConfigDict(extra="forbid")

    #: Versions below this were published before the model had an index: absent from it, they
    #: load with their manifest unverified (and a warning) until `reindex` records them.
    indexed_from: int = 1
    manifests: dict[int, FileDigest] = {}


class StoreFile(BaseModel):
    """`store.json`: settings of the whole store."""

    default_model: str | None = None


_MANIFEST = TypeAdapter(Manifest)
_INDEX = TypeAdapter(ManifestIndex)
_ALIASES = TypeAdapter(dict[str, AliasState])
_STORE_FILE = TypeAdapter(StoreFile)


class ModelStore:
    """A model store rooted at a directory (created on first publish)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # ------------------------------------------------------------------ reading

    def list_models(self) -> list[str]:
        """Models with at least one published version."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if NAME_PATTERN.fullmatch(p.name) and p.is_dir() and self.list_versions(p.name)
        )

    def list_versions(self, name: str) -> list[int]:
        model_dir = self._model_dir(name)
        return sorted(
            int(p.name)
            for p in model_dir.iterdir()
            if _is_number(p.name) and (p / MANIFEST_FILE).is_file()
        )

    def read_manifest(self, name: str, version: int | str) -> Manifest:
        """The manifest of a version, without checking it or its files (see `verify`)."""
        return self._load_manifest(name, version)[0]

    def version_dir(self, name: str, version: int | str) -> Path:
        return self._model_dir(name) / str(check_version(version))

    def verify(self, name: str, version: int | str) -> Manifest:
        """Check a version against what was published: its manifest against the model's
        index, every file against the sha256 and size in the manifest, and labels.txt against
        the manifest's labels. Raises IntegrityError naming the first file that differs."""
        manifest, raw = self._load_manifest(name, version)
        directory = self.version_dir(name, version)
        self._check_indexed(manifest, raw, directory / MANIFEST_FILE)
        _check_files(manifest, directory)
        _check_labels(manifest, directory)
        return manifest

    def manifest_index(self, name: str) -> ManifestIndex | None:
        """The model's index of published manifests; None for a model published before the
        store kept one."""
        path = self._model_dir(name) / INDEX_FILE
        return _parse(path, _INDEX, "manifest index") if path.is_file() else None

    def is_indexed(self, name: str, version: int | str) -> bool:
        """Whether `verify` checks this version's manifest itself (False: published before the
        model's index, and not recorded by `reindex` since)."""
        index = self.manifest_index(name)
        return index is not None and check_version(version) in index.manifests

    def aliases(self, name: str) -> dict[str, AliasState]:
        path = self._model_dir(name) / ALIASES_FILE
        return _parse(path, _ALIASES, "alias file") if path.is_file() else {}

    def resolve(
        self, name: str | None = None, *, version: int | str | None = None, alias: str | None = None
    ) -> Manifest:
        """The manifest a request means: an explicit version, else the alias's target, else
        the `stable` alias, else the newest version. `name` defaults to the default model."""
        if name is None:
            name = self.default_model()
            if name is None:
                raise ModelNotFoundError("(default)", self.list_models())
        if version is not None and alias is not None:
            raise InvalidNameError("give a version or an alias, not both")
        if version is not None:
            return self.read_manifest(name, version)
        aliases = self.aliases(name)
        if alias is not None:
            if check_alias(alias) not in aliases:
                known = ", ".join(aliases) or "none"
                raise AliasNotFoundError(
                    f"model {name!r} has no alias {alias!r} (aliases: {known})"
                )
            return self.read_manifest(name, aliases[alias].version)
        if DEFAULT_ALIAS in aliases:
            return self.read_manifest(name, aliases[DEFAULT_ALIAS].version)
        versions = self.list_versions(name)
        if not versions:
            raise VersionNotFoundError(name, "any", versions)
        return self.read_manifest(name, versions[-1])

    def default_model(self) -> str | None:
        """The store's default model: the one set with `set_default_model`, else the only one."""
        path = self.root / STORE_FILE
        if path.is_file():
            name = _parse(path, _STORE_FILE, "store file").default_model
            if name in self.list_models():
                return name
        models = self.list_models()
        return models[0] if len(models) == 1 else None

    # ------------------------------------------------------------------ writing

    def publish(self, name: str, draft: ManifestDraft, files: Mapping[str, Path]) -> Manifest:
        """Publish a new version: `files` maps file names in the version directory to the
        files to copy there. Returns the manifest with its version number."""
        check_name(name)
        for file_name in files:
            if not NAME_PATTERN.fullmatch(file_name) or file_name in (MANIFEST_FILE, LABELS_FILE):
                raise PublishError(f"invalid or reserved file name {file_name!r}")
        missing = {a.file for a in draft.all_artifacts} - set(files)
        if missing:
            raise PublishError(f"the draft lists artifacts with no file: {', '.join(missing)}")
        for index, label in enumerate(draft.spec.labels or ()):
            if "\n" in label or "\r" in label:
                raise PublishError(
                    f"label {index} ({label!r}) has a line break: labels.txt holds one per line"
                )
        model_dir = self.root / name
        model_dir.mkdir(parents=True, exist_ok=True)
        staging = model_dir / f".staging-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        staging.mkdir()
        try:
            for file_name, source in files.items():
                shutil.copyfile(source, staging / file_name)
            if draft.spec.labels is not None:
                (staging / LABELS_FILE).write_bytes(_labels_file(draft.spec.labels))
            digests = {}
            for path in sorted(staging.iterdir()):
                _fsync_file(path)
                digests[path.name] = FileDigest(sha256=_sha256(path), bytes=path.stat().st_size)
            with self._locked(name):
                self._remove_abandoned_staging(model_dir)
                version = self._next_version(model_dir)
                manifest = Manifest(
                    **draft.model_dump(),
                    name=name,
                    version=version,
                    created_at=datetime.now(UTC),
                    files=digests,
                )
                manifest_bytes = manifest.model_dump_json(indent=2).encode()
                _write_durably(staging / MANIFEST_FILE, manifest_bytes)
                _fsync_dir(staging)
                target = model_dir / str(version)
                if target.exists():
                    raise PublishError(f"{target} exists but is not a published version")
                # Indexed before the rename: a crash in between leaves an entry for a number
                # the next publish reissues (.last_version is not written yet) and overwrites.
                index = self.manifest_index(name) or ManifestIndex(indexed_from=version)
                index.manifests[version] = _digest(manifest_bytes)
                self._write_index(name, index)
                os.rename(staging, target)
                _write_durably(model_dir / LAST_VERSION_FILE, str(version))
                _fsync_dir(model_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        for path in target.iterdir():
            path.chmod(0o444)
        return manifest

    def promote(self, name: str, version: int | str, alias: str = DEFAULT_ALIAS) -> AliasState:
        """Point `alias` at `version`, remembering the previous target for rollback."""
        version, alias = check_version(version), check_alias(alias)
        with self._locked(name):
            self.read_manifest(name, version)
            aliases = self.aliases(name)
            state = aliases.get(alias)
            if state is None:
                state = AliasState(version=version)
            elif state.version != version:
                state = AliasState(version=version, history=[*state.history, state.version])
            aliases[alias] = state
            self._write_aliases(name, aliases)
            return state

    def rollback(self, name: str, alias: str = DEFAULT_ALIAS) -> AliasState:
        """Point `alias` back at its previous target (skipping versions deleted since)."""
        alias = check_alias(alias)
        with self._locked(name):
            aliases = self.aliases(name)
            if alias not in aliases:
                raise AliasNotFoundError(f"model {name!r} has no alias {alias!r}")
            history, existing = list(aliases[alias].history), set(self.list_versions(name))
            while history and history[-1] not in existing:
                history.pop()
            if not history:
                raise AliasNotFoundError(
                    f"alias {alias!r} of {name!r} has no earlier version to roll back to"
                )
            state = AliasState(version=history.pop(), history=history)
            aliases[alias] = state
            self._write_aliases(name, aliases)
            return state

    def delete_alias(self, name: str, alias: str) -> AliasState:
        """Remove `alias` (and its history), so that a stale alias pins no version; returns
        what it pointed at. Deleting `stable` routes requests to the newest version."""
        alias = check_alias(alias)
        with self._locked(name):
            aliases = self.aliases(name)
            if alias not in aliases:
                known = ", ".join(aliases) or "none"
                raise AliasNotFoundError(
                    f"model {name!r} has no alias {alias!r} (aliases: {known})"
                )
            state = aliases.pop(alias)
            self._write_aliases(name, aliases)
            return state

    def delete(self, name: str, version: int | str) -> None:
        """Remove a version no alias points at. The directory is renamed away first, so a
        reader never sees a half-deleted version."""
        version = check_version(version)
        with self._locked(name):
            self.read_manifest(name, version)
            users = [a for a, s in self.aliases(name).items() if s.version == version]
            if users:
                raise VersionInUseError(name, version, users)
            model_dir = self._model_dir(name)
            doomed = model_dir / f".deleting-{version}-{uuid.uuid4().hex[:8]}"
            os.rename(model_dir / str(version), doomed)
            _fsync_dir(model_dir)
            index = self.manifest_index(name)
            if index is not None and index.manifests.pop(version, None) is not None:
                self._write_index(name, index)
        shutil.rmtree(doomed)

    def reindex(self, name: str) -> tuple[list[int], dict[int, str]]:
        """Record in the model's index the manifests of versions it lacks: those published
        before the store kept an index (trust on first use: each must still match its own
        digests and labels). Returns the versions recorded and, by version, why others were
        not. A recorded manifest is never re-recorded: a mismatch there is what the index is
        for, so it stays an integrity failure."""
        added: list[int] = []
        refused: dict[int, str] = {}
        with self._locked(name):
            index = self.manifest_index(name) or ManifestIndex()
            for version in self.list_versions(name):
                if version in index.manifests:
                    continue
                try:
                    manifest, raw = self._load_manifest(name, version)
                    directory = self.version_dir(name, version)
                    _check_files(manifest, directory)
                    _check_labels(manifest, directory)
                except IntegrityError as exc:
                    refused[version] = str(exc)
                    continue
                index.manifests[version] = _digest(raw)
                added.append(version)
            # Every version is now either recorded or refused: none is left unverified.
            self._write_index(name, ManifestIndex(indexed_from=1, manifests=index.manifests))
        return added, refused

    def set_default_model(self, name: str) -> None:
        self._model_dir(name)
        self.root.mkdir(parents=True, exist_ok=True)
        text = StoreFile(default_model=name).model_dump_json(indent=2)
        _write_durably(self.root / STORE_FILE, text)

    # ------------------------------------------------------------------ internals

    def _model_dir(self, name: str) -> Path:
        path = self.root / check_name(name)
        if not path.is_dir():
            raise ModelNotFoundError(name, self.list_models())
        return path

    @contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        lock = FileLock(self._model_dir(name) / ".lock", timeout=LOCK_TIMEOUT_S)
        try:
            with lock:
                yield
        except Timeout:
            raise StoreError(
                f"model {name!r} is locked by another publisher for over {LOCK_TIMEOUT_S:.0f} s"
            ) from None

    def _load_manifest(self, name: str, version: int | str) -> tuple[Manifest, bytes]:
        """A version's manifest and the exact bytes it was parsed from (what the index hashed)."""
        version = check_version(version)
        path = self._model_dir(name) / str(version) / MANIFEST_FILE
        if not path.is_file():
            raise VersionNotFoundError(name, version, self.list_versions(name))
        raw = _read(path)
        manifest = _parse(path, _MANIFEST, "manifest", raw)
        if manifest.name != name or manifest.version != version:
            raise IntegrityError(
                str(path), f"says {manifest.name} version {manifest.version}, stored as {version}"
            )
        return manifest, raw

    def _check_indexed(self, manifest: Manifest, raw: bytes, path: Path) -> None:
        index = self.manifest_index(manifest.name)
        recorded = index.manifests.get(manifest.version) if index is not None else None
        if recorded is None:
            if index is not None and manifest.version >= index.indexed_from:
                raise IntegrityError(
                    str(path),
                    f"not in {INDEX_FILE}, so not published by this store (copied in by hand?); "
                    f"`actserve models reindex {manifest.name}` records it if you trust it",
                )
            logger.warning(
                "%s: published before the store indexed manifests, so the manifest itself is "
                "unverified; `actserve models reindex %s` records it",
                path,
                manifest.name,
            )
            return
        actual = _digest(raw)
        if actual != recorded:
            raise IntegrityError(
                str(path),
                f"sha256 {actual.sha256[:16]}… differs from the {recorded.sha256[:16]}… "
                f"{INDEX_FILE} recorded at publish (edited after publishing)",
            )

    def _next_version(self, model_dir: Path) -> int:
        """One past every version ever issued: a deleted number is never reused."""
        last = model_dir / LAST_VERSION_FILE
        issued = 0
        if last.is_file():
            text = _read(last).decode("ascii", "replace").strip()
            if not _is_number(text):
                raise CorruptFileError(str(last), f"holds {text[:20]!r}, not a version number")
            issued = int(text)
        existing = [int(p.name) for p in model_dir.iterdir() if _is_number(p.name)]
        return max([issued, *existing]) + 1

    def _write_aliases(self, name: str, aliases: dict[str, AliasState]) -> None:
        payload = _ALIASES.dump_json(dict(sorted(aliases.items())), indent=2)
        _write_durably(self._model_dir(name) / ALIASES_FILE, payload)

    def _write_index(self, name: str, index: ManifestIndex) -> None:
        _write_durably(self._model_dir(name) / INDEX_FILE, index.model_dump_json(indent=2))

    @staticmethod
    def _remove_abandoned_staging(model_dir: Path) -> None:
        """Staging and deleting directories left by processes that died mid-way."""
        for path in model_dir.iterdir():
            staging = re.fullmatch(r"\.staging-(\d+)-\w+", path.name)
            abandoned = staging is not None and not _process_alive(int(staging.group(1)))
            if abandoned or path.name.startswith(".deleting-"):
                shutil.rmtree(path, ignore_errors=True)


def _check_files(manifest: Manifest, directory: Path) -> None:
    """Every file the manifest lists, against the sha256 and size it recorded; and no
    artifact left out of that list (it would load unchecked)."""
    unlisted = sorted({a.file for a in manifest.all_artifacts} - set(manifest.files))
    if unlisted:
        raise IntegrityError(
            str(directory / unlisted[0]), "an artifact the manifest has no sha256 for"
        )
    for file_name, digest in manifest.files.items():
        path = directory / file_name
        if not path.is_file():
            raise IntegrityError(str(path), "missing")
        size = path.stat().st_size
        if size != digest.bytes:
            raise IntegrityError(
                str(path), f"{size} bytes, the manifest recorded {digest.bytes} (truncated?)"
            )
        actual = _sha256(path)
        if actual != digest.sha256:
            raise IntegrityError(
                str(path),
                f"sha256 {actual[:16]}… differs from the manifest's "
                f"{digest.sha256[:16]}… (modified after publishing)",
            )


def _check_labels(manifest: Manifest, directory: Path) -> None:
    """labels.txt, the file people read, and the manifest's labels, the ones the service
    answers with, were written together at publish: if they disagree, one was swapped."""
    path = directory / LABELS_FILE
    labels = manifest.spec.labels
    if LABELS_FILE not in manifest.files:
        if labels is not None:
            raise IntegrityError(
                str(path), f"not among the manifest's files, which has {len(labels)} labels"
            )
        return
    if labels is None:
        raise IntegrityError(str(path), "listed by a manifest that has no labels")
    written = _read(path)
    if written == _labels_file(labels):
        return
    lines = written.decode("utf-8", "replace").split("\n")
    lines = lines[:-1] if lines and not lines[-1] else lines
    differs = next((i for i, (a, b) in enumerate(zip(lines, labels, strict=False)) if a != b), None)
    if differs is None:
        reason = f"{len(lines)} labels, the manifest has {len(labels)}"
    else:
        reason = (
            f"class {differs} is {lines[differs]!r} here and {labels[differs]!r} in the manifest"
        )
    raise IntegrityError(str(path), f"disagrees with the manifest's labels: {reason}")


def _labels_file(labels: tuple[str, ...]) -> bytes:
    return ("\n".join(labels) + "\n").encode()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CorruptFileError(str(path), f"unreadable ({exc.strerror or exc})") from None


def _parse(path: Path, schema: TypeAdapter, what: str, raw: bytes | None = None):
    """A store file parsed and validated, or CorruptFileError saying what is wrong (never a
    raw JSON or pydantic error: the message reaches operators and `GET /models`)."""
    try:
        return schema.validate_json(_read(path) if raw is None else raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        where = ".".join(map(str, errors[0]["loc"]))
        reason = f"{where}: {errors[0]['msg']}" if where else errors[0]["msg"]
        if len(errors) > 1:
            reason += f" (and {len(errors) - 1} more)"
        raise CorruptFileError(str(path), f"not a valid {what}: {reason}") from None


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _digest(data: bytes) -> FileDigest:
    return FileDigest(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _fsync_file(path: Path) -> None:
    with path.open("rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: str | bytes) -> None:
    """Write a small file atomically: a temporary sibling, fsync, rename over the target."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with tmp.open("wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
