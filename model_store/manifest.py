"""The manifest: everything known about one published model version, as `manifest.json`.

Written once by the store at publish time and never edited. `schema_version` lets future
readers refuse (or upgrade) manifests they do not understand.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from model_store.spec import ModelSpec, Profile

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
LABELS_FILE = "labels.txt"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TensorInfo(_Frozen):
    """An artifact input or output; `shape` uses 'batch' for the dynamic batch axis."""

    name: str
    dtype: str = "float32"
    shape: tuple[int | str, ...]


class ParityCheck(_Frozen):
    """Eager model vs exported artifact on one fixed random batch, for one output."""

    batch_size: int
    output: str
    max_abs_diff: float
    #: max|exported − eager| / max|eager|: the difference on the scale of the output.
    max_rel_diff: float
    #: Fraction of samples whose arg-max agrees (logits only).
    top1_agreement: float | None = None


class ParityReport(_Frozen):
    runtime: str = Field(description="Where the artifact ran, e.g. 'onnxruntime CPU'.")
    tolerance: float = Field(description="Largest max_rel_diff accepted.")
    checks: tuple[ParityCheck, ...]
    passed: bool


class Artifact(_Frozen):
    format: Literal["onnx", "torchscript"]
    file: str
    precision: Literal["fp32", "fp16"] = "fp32"
    opset: int | None = None
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    parity: ParityReport


class FileDigest(_Frozen):
    sha256: str
    bytes: int


class SourceCheckpoint(_Frozen):
    file_name: str
    sha256: str
    layout: str = Field(description="The public checkpoint layout it was read as.")


class ManifestDraft(_Frozen):
    """What an exporter knows; the store adds name, version, time and file digests."""

    backbone: str
    trained: bool
    description: str = ""
    #: The service's profile when a request names none: "accurate" = the recipe's full test
    #: protocol, "fast" = one clip × the centre crop.
    default_profile: Profile = Profile.ACCURATE
    source_checkpoint: SourceCheckpoint | None = None
    spec: ModelSpec
    artifacts: tuple[Artifact, ...]
    exporter: dict[str, str] = Field(default_factory=dict, description="Tool versions.")


class Manifest(ManifestDraft):
    schema_version: Literal[1] = SCHEMA_VERSION
    name: str
    version: int
    created_at: datetime
    #: sha256 and size of every file of the version except manifest.json.
    files: dict[str, FileDigest]

    def artifact(self, format: str, precision: str | None = None) -> Artifact | None:
        """The first artifact of a format (and precision, if given), or None."""
        for artifact in self.artifacts:
            if artifact.format == format and precision in (None, artifact.precision):
                return artifact
        return None
