"""Versioned, checksummed model artifacts and the spec that travels with them (torch-free)."""

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
    Artifact,
    FileDigest,
    Fusion,
    Manifest,
    ManifestDraft,
    ParityCheck,
    ParityReport,
    SourceCheckpoint,
    StreamMember,
    TensorInfo,
)
from model_store.spec import ChannelOrder, Modality, ModelSpec, Profile, Recipe, Sampling
from model_store.store import AliasState, ModelStore

__all__ = [
    "AliasNotFoundError",
    "AliasState",
    "Artifact",
    "ChannelOrder",
    "CorruptFileError",
    "FileDigest",
    "Fusion",
    "IntegrityError",
    "InvalidNameError",
    "Manifest",
    "ManifestDraft",
    "Modality",
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
    "StreamMember",
    "TensorInfo",
    "VersionInUseError",
    "VersionNotFoundError",
]
