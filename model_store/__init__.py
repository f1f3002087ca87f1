"""Versioned, checksummed model artifacts and the spec that travels with them (torch-free)."""

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
    Artifact,
    FileDigest,
    Manifest,
    ManifestDraft,
    ParityCheck,
    ParityReport,
    SourceCheckpoint,
    TensorInfo,
)
from model_store.spec import ChannelOrder, ModelSpec, Profile, Recipe, Sampling
from model_store.store import AliasState, ModelStore

__all__ = [
    "AliasNotFoundError",
    "AliasState",
    "Artifact",
    "ChannelOrder",
    "FileDigest",
    "IntegrityError",
    "InvalidNameError",
    "Manifest",
    "ManifestDraft",
    "ModelNotFoundError",
    "ModelSpec",
    "ModelStore",
    "ParityCheck",
    "ParityReport",
    "Profile",
    "PublishError",
    "Recipe",
    "Sampling",
    "SourceCheckpoint",
    "StoreError",
    "TensorInfo",
    "VersionInUseError",
    "VersionNotFoundError",
]
