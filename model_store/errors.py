"""Errors raised by the model store.

StoreError
├── InvalidNameError       a model name, alias or version is malformed (e.g. path traversal)
├── ModelNotFoundError     no such model in the store
├── VersionNotFoundError   no such version (or alias target) of a model
├── AliasNotFoundError     no such alias, or nothing to roll back to
├── VersionInUseError      a version cannot be deleted while an alias points at it
├── IntegrityError         a file differs from what was published: an artifact or labels.txt
│   │                      from its manifest, a manifest from the model's index
│   └── CorruptFileError   a store file cannot be parsed (manifest.json, aliases.json, ...)
└── PublishError           a publish was refused (bad draft, missing files)
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""


class InvalidNameError(StoreError, ValueError):
    pass


class ModelNotFoundError(StoreError, LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        listed = ", ".join(known) if known else "the store is empty"
        super().__init__(f"no model {name!r} in the store ({listed})")
        self.name = name


class VersionNotFoundError(StoreError, LookupError):
    def __init__(self, name: str, version: int | str, known: list[int]) -> None:
        listed = ", ".join(map(str, known)) if known else "none"
        super().__init__(f"model {name!r} has no version {version} (versions: {listed})")
        self.name, self.version = name, version


class AliasNotFoundError(StoreError, LookupError):
    pass


class VersionInUseError(StoreError):
    def __init__(self, name: str, version: int, aliases: list[str]) -> None:
        super().__init__(
            f"{name} version {version} is the target of alias(es) {', '.join(aliases)}; "
            "promote another version first"
        )
        self.name, self.version, self.aliases = name, version, aliases


class IntegrityError(StoreError):
    """A published file differs from what its manifest recorded."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}; refusing to load this version")
        self.path, self.reason = path, reason


class CorruptFileError(IntegrityError):
    """A file the store writes (manifest.json, index.json, aliases.json, store.json,
    .last_version) no longer parses as what the store wrote: the store cannot guess what it
    meant, so the operation that needs it stops with the file named."""

    def __init__(self, path: str, reason: str) -> None:
        StoreError.__init__(self, f"{path}: {reason}; repair or restore it")
        self.path, self.reason = path, reason


class PublishError(StoreError):
    pass
