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
    Fusion,
    Manifest,
    ManifestDraft,
    ParityCheck,
    ParityReport,
    ProbeProvenance,
    SimilarityCalibration,
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
    "ProbeProvenance",
    "Profile",
    "PublishError",
    "Recipe",
    "Sampling",
    "SimilarityCalibration",
    "SourceCheckpoint",
    "StoreError",
    "StreamMember",
    "TensorInfo",
    "VersionInUseError",
    "VersionNotFoundError",
]
