"""A filesystem model store: immutable, checksummed, numbered versions with movable aliases.

    <root>/
      store.json                  {"default_model": "r3d_18"}
      <model>/
        aliases.json              {"stable": {"version": 3, "history": [1, 2]}}
        1/  manifest.json  model.onnx  model.ts  labels.txt
        2/  ...
        .staging-<pid>-<id>/      a publish in progress (or the debris of a crashed one)
        .lock                     serialises publishers and alias writers of this model

A publish stages every file in a hidden directory on the same filesystem, fsyncs it, then
takes the model's lock, picks the next version number and renames the directory into place:
readers see either no version or a whole one. Versions never change after that; the store
refuses to load a version whose files no longer match the sha256 its manifest recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout
from pydantic import BaseModel, ValidationError

from model_store.errors import (
    AliasNotFoundError,
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
            if p.name.isdigit() and (p / MANIFEST_FILE).is_file()
        )

    def read_manifest(self, name: str, version: int | str) -> Manifest:
        """The manifest of a version, without checking its files (see `verify`)."""
        version = check_version(version)
        path = self._model_dir(name) / str(version) / MANIFEST_FILE
        if not path.is_file():
            raise VersionNotFoundError(name, version, self.list_versions(name))
        try:
            manifest = Manifest.model_validate_json(path.read_bytes())
        except ValidationError as exc:
            raise IntegrityError(
                str(path), f"not a valid manifest ({exc.error_count()} errors)"
            ) from None
        if manifest.name != name or manifest.version != version:
            raise IntegrityError(
                str(path), f"says {manifest.name} version {manifest.version}, stored as {version}"
            )
        return manifest

    def version_dir(self, name: str, version: int | str) -> Path:
        return self._model_dir(name) / str(check_version(version))

    def verify(self, name: str, version: int | str) -> Manifest:
        """Check every file of a version against the sha256 and size in its manifest."""
        manifest = self.read_manifest(name, version)
        directory = self.version_dir(name, version)
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
        return manifest

    def aliases(self, name: str) -> dict[str, AliasState]:
        path = self._model_dir(name) / "aliases.json"
        if not path.is_file():
            return {}
        raw = json.loads(path.read_text())
        return {alias: AliasState.model_validate(state) for alias, state in raw.items()}

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
        path = self.root / "store.json"
        if path.is_file():
            name = json.loads(path.read_text()).get("default_model")
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
        model_dir = self.root / name
        model_dir.mkdir(parents=True, exist_ok=True)
        staging = model_dir / f".staging-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        staging.mkdir()
        try:
            for file_name, source in files.items():
                shutil.copyfile(source, staging / file_name)
            if draft.spec.labels is not None:
                (staging / LABELS_FILE).write_text("\n".join(draft.spec.labels) + "\n")
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
                _write_durably(staging / MANIFEST_FILE, manifest.model_dump_json(indent=2))
                _fsync_dir(staging)
                target = model_dir / str(version)
                if target.exists():
                    raise PublishError(f"{target} exists but is not a published version")
                os.rename(staging, target)
                _write_durably(model_dir / ".last_version", str(version))
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
        shutil.rmtree(doomed)

    def set_default_model(self, name: str) -> None:
        self._model_dir(name)
        self.root.mkdir(parents=True, exist_ok=True)
        _write_durably(self.root / "store.json", json.dumps({"default_model": name}, indent=2))

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

    def _next_version(self, model_dir: Path) -> int:
        """One past every version ever issued: a deleted number is never reused."""
        last = model_dir / ".last_version"
        issued = int(last.read_text()) if last.is_file() else 0
        existing = [int(p.name) for p in model_dir.iterdir() if p.name.isdigit()]
        return max([issued, *existing]) + 1

    def _write_aliases(self, name: str, aliases: dict[str, AliasState]) -> None:
        payload = {alias: state.model_dump() for alias, state in sorted(aliases.items())}
        _write_durably(self._model_dir(name) / "aliases.json", json.dumps(payload, indent=2))

    @staticmethod
    def _remove_abandoned_staging(model_dir: Path) -> None:
        """Staging and deleting directories left by processes that died mid-way."""
        for path in model_dir.iterdir():
            staging = re.fullmatch(r"\.staging-(\d+)-\w+", path.name)
            abandoned = staging is not None and not _process_alive(int(staging.group(1)))
            if abandoned or path.name.startswith(".deleting-"):
                shutil.rmtree(path, ignore_errors=True)


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


def _write_durably(path: Path, text: str) -> None:
    """Write a small file atomically: a temporary sibling, fsync, rename over the target."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with tmp.open("w") as f:
        f.write(text)
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
