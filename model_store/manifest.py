"""The manifest: everything known about one published model version, as `manifest.json`.

Written once by the store at publish time and never edited. `schema_version` lets future
readers refuse (or upgrade) manifests they do not understand:

- 1: the recipe names its sampler, sizes, crops and normalisation;
- 2: the recipe also says how the reference code resized and cut frames (filter, size
  rounding, stretch, pre-scale, crop offsets, fps-normalised and sliding samplers, the tail of
  back-to-back windows). A version-1 manifest still reads: the new fields take defaults that
  mean what actserve did then, so a published model keeps serving the same numbers;
- 3: artifacts from elsewhere (issue 28): the recipe's input `layout`, the spec's `tensors`
  (the artifact's names for clips, logits and embedding) and a parity report's `status`
  ("declared" for an imported artifact nobody compared with a reference). Versions 1 and 2 read
  as before: NCTHW, actserve's names, "checked".
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model_store.spec import Modality, ModelSpec, Profile

SCHEMA_VERSION = 3
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
    """How far an artifact is known to compute what its source model computes.

    `checked`: the exporter ran the artifact and the source model on the same inputs and
    compared them (`checks`, within `tolerance`). `declared`: an imported artifact whose source
    actserve never saw (`actserve import-artifact`); the recipe and outputs are its publisher's
    word, `checks` is empty and `note` says what was validated instead.
    """

    status: Literal["checked", "declared"] = "checked"
    runtime: str = Field(description="Where the artifact ran, e.g. 'onnxruntime CPU'.")
    tolerance: float | None = Field(
        description="Largest max_rel_diff accepted (None when nothing was compared)."
    )
    checks: tuple[ParityCheck, ...]
    passed: bool = Field(description="Checked: every check within tolerance. Declared: validated.")
    note: str = ""

    @model_validator(mode="after")
    def _check_status(self) -> ParityReport:
        if self.status == "declared" and self.checks:
            raise ValueError("a declared parity has no checks: nothing was compared")
        if self.status == "checked" and (self.tolerance is None or not self.checks):
            raise ValueError("a checked parity records its tolerance and checks")
        return self

    def describe(self) -> str:
        """One line for people: the worst difference, or that nobody checked."""
        if self.status == "declared":
            return f"declared, not checked ({self.runtime})"
        worst = max(c.max_rel_diff for c in self.checks)
        return f"checked: worst rel diff {worst:.2g} (tolerance {self.tolerance:g}, {self.runtime})"


class Artifact(_Frozen):
    """One file of a version. `inputs` and `outputs` are the tensors as actserve exchanges
    them (`clips` in (batch, C, T, H, W), `logits`, `embedding`; what /v2 serves); an imported
    file's own tensor names and layout are the spec's `tensors` and the recipe's `layout`."""

    format: Literal["onnx", "torchscript"]
    file: str
    precision: Literal["fp32", "fp16"] = "fp32"
    opset: int | None = None
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    parity: ParityReport
    #: The same file checked on the other runtimes that serve it (OpenVINO, for ONNX fp32).
    runtime_parity: tuple[ParityReport, ...] = ()


Precision = Literal["fp32", "bf16", "fp16"]


class AgreementCheck(_Frozen):
    """A lower precision against fp32 on one network's weights, over a set of inputs."""

    weights: str = Field(description="Which weights, e.g. 'exported' or 'parity fixture p3d63'.")
    samples: int
    #: Fraction of inputs whose arg-max class is fp32's.
    top1_agreement: float
    #: Largest difference of a class probability (softmax of the logits) from fp32's.
    max_abs_prob_diff: float


class PrecisionAgreement(_Frozen):
    """How a version's serving precision agrees with fp32, measured at export."""

    precision: Precision
    runtime: str = Field(description="Where the lower precision ran, e.g. 'openvino 2026.4 CPU'.")
    checks: tuple[AgreementCheck, ...]
    #: The bar: top-1 agreement ≥ min_top1 and max |Δp| ≤ max_prob_diff on every check.
    min_top1: float
    max_prob_diff: float
    passed: bool
    forced: bool = Field(False, description="Published below the bar on the exporter's --force.")


class FileDigest(_Frozen):
    sha256: str
    bytes: int


class SourceCheckpoint(_Frozen):
    file_name: str
    sha256: str
    layout: str = Field(description="The public checkpoint layout it was read as.")


class StreamMember(_Frozen):
    """One stream of a two-stream version: a network of its own, with its spec and artifacts."""

    modality: Modality
    backbone: str
    trained: bool
    source_checkpoint: SourceCheckpoint | None = None
    spec: ModelSpec
    artifacts: tuple[Artifact, ...] = Field(min_length=1)

    def artifact(self, format: str, precision: str | None = None) -> Artifact | None:
        return next(
            (a for a in self.artifacts if a.format == format and precision in (None, a.precision)),
            None,
        )


class Fusion(_Frozen):
    """How a two-stream version combines its streams: the weighted mean of their softmaxes.

    Each stream's softmax is first averaged over its views (as for one stream); the version's
    probabilities are sum(w_s p_s) / sum(w_s). Two-stream papers weight flow above RGB
    (TSN: 1 : 1.5).
    """

    rule: Literal["weighted_softmax"] = "weighted_softmax"
    weights: dict[Modality, float]

    @model_validator(mode="after")
    def _check_weights(self) -> Fusion:
        if any(w <= 0 for w in self.weights.values()):
            raise ValueError(f"fusion weights must be positive, got {self.weights}")
        return self


class SimilarityCalibration(_Frozen):
    """The cosine similarity of two videos' mean embeddings above which `POST /similarity`
    calls them the same action, and how well that threshold separated labelled pairs."""

    threshold: float = Field(ge=-1.0, le=1.0)
    #: Mean of the same-pair and different-pair accuracies at the threshold, on `pairs` pairs.
    balanced_accuracy: float = Field(ge=0.0, le=1.0)
    pairs: int = Field(ge=1)
    source: str = Field(description="Which labelled videos it was calibrated on.")


class ProbeProvenance(_Frozen):
    """Where a linear-probe model comes from: a base version's network with a new linear head
    fitted on the base's embeddings of labelled videos (`actserve probe`)."""

    base_model: str
    base_version: int
    #: sha256 over the sorted (class, video sha256) pairs: the same folder gives the same hash.
    data_sha256: str
    videos_per_class: dict[str, int]
    classifier: str = Field(examples=["LogisticRegression(C=1.0) on standardised embeddings"])
    profile: Profile = Field(description="The base recipe's views the embeddings averaged.")
    cv_folds: int
    cv_accuracy: float = Field(ge=0.0, le=1.0)
    #: One-sided binomial test of the held-out accuracy against always answering the largest
    #: class (small = the labels carry signal).
    cv_p_value: float = Field(ge=0.0, le=1.0)
    #: Open-set probes (`actserve probe --open-set`): an embedding whose cosine similarity to
    #: every class prototype is below `reject_threshold` is `unknown`. The threshold is
    #: calibrated on the probe's own cross-validation (out-of-fold similarities of videos to
    #: the prototypes of folds that never saw them).
    reject_threshold: float | None = Field(None, ge=-1.0, le=1.0)
    #: The unit-length mean embedding of each class (its labels' order), with the threshold.
    prototypes: tuple[tuple[float, ...], ...] | None = None
    #: `actserve probe --extend`: the base model's classes come first, then the new ones.
    extends_base: bool = False


class ManifestDraft(_Frozen):
    """What an exporter knows; the store adds name, version, time and file digests.

    A one-stream version describes its network in `spec` and `artifacts`. A two-stream version
    lists its members in `streams` (one rgb, one flow, sampling the same clips and crops so
    their views pair up) with a `fusion` rule; its `spec` is the version's answer (labels and
    classes; the RGB member's recipe; the embedding is the RGB one followed by the flow one)
    and its own `artifacts` are empty.
    """

    backbone: str
    trained: bool
    description: str = ""
    #: The service's profile when a request names none: "accurate" = the recipe's full test
    #: protocol, "fast" = one clip × the centre crop.
    default_profile: Profile = Profile.ACCURATE
    source_checkpoint: SourceCheckpoint | None = None
    spec: ModelSpec
    artifacts: tuple[Artifact, ...]
    #: The precision the version is served at (at most: a runtime without it runs fp32):
    #: fp32; bf16 on CPUs with AVX512-BF16 or AMX (OpenVINO); fp16 on GPUs (the fp16 artifact).
    precision: Precision = "fp32"
    #: The measured agreement of `precision` with fp32 (None for fp32 versions).
    precision_agreement: PrecisionAgreement | None = None
    exporter: dict[str, str] = Field(default_factory=dict, description="Tool versions.")
    #: `POST /similarity`'s threshold for this version (None: the service's documented default).
    similarity: SimilarityCalibration | None = None
    #: Set on versions made by `actserve probe`.
    probe: ProbeProvenance | None = None
    # Two-stream versions (issue 16); manifests without these fields are one-stream.
    streams: tuple[StreamMember, ...] = ()
    fusion: Fusion | None = None

    @model_validator(mode="after")
    def _check_streams(self) -> ManifestDraft:
        if not self.streams:
            if self.fusion is not None:
                raise ValueError("a fusion rule needs streams to fuse")
            return self
        modalities = sorted(m.modality.value for m in self.streams)
        if modalities != ["flow", "rgb"]:
            raise ValueError(
                f"a two-stream version has one rgb and one flow stream, got {modalities}"
            )
        if self.artifacts:
            raise ValueError("a two-stream version keeps its artifacts in its streams")
        if self.fusion is None or set(self.fusion.weights) != {Modality.RGB, Modality.FLOW}:
            raise ValueError("a two-stream version needs fusion weights for rgb and flow")
        rgb, flow = (self.stream(m).spec.recipe for m in (Modality.RGB, Modality.FLOW))
        timing = ("sampling", "clip_len", "frame_interval", "num_clips", "num_crops")
        differ = [f for f in timing if getattr(rgb, f) != getattr(flow, f)]
        if differ:
            # Fusion pairs the streams view by view: the same clips, the same crops.
            raise ValueError(f"the streams' views do not pair up: {', '.join(differ)} differ")
        for member in self.streams:
            if member.spec.recipe.modality != member.modality:
                raise ValueError(
                    f"the {member.modality} stream's recipe is a {member.spec.recipe.modality} one"
                )
            if (member.spec.num_classes, member.spec.labels) != (
                self.spec.num_classes,
                self.spec.labels,
            ):
                raise ValueError(
                    f"the {member.modality} stream's classes differ from the version's"
                )
        return self

    def stream(self, modality: Modality | str) -> StreamMember | None:
        return next((m for m in self.streams if m.modality == modality), None)

    @property
    def all_artifacts(self) -> tuple[Artifact, ...]:
        """Every artifact file of the version, of all its streams."""
        return self.artifacts + tuple(a for m in self.streams for a in m.artifacts)


class Manifest(ManifestDraft):
    schema_version: Literal[1, 2, 3] = SCHEMA_VERSION
    name: str
    version: int
    created_at: datetime
    #: sha256 and size of every file of the version except manifest.json.
    files: dict[str, FileDigest]

    def networks(self) -> tuple[Manifest, ...]:
        """The networks a version runs, each as a one-stream manifest: this one, or a
        two-stream version's rgb and flow members (same name and version, their own spec and
        artifacts), which load like any version."""
        return (self,) if not self.streams else tuple(self.member(m) for m in Modality)

    def member(self, modality: Modality | str) -> Manifest:
        member = self.stream(modality)
        if member is None:
            raise ValueError(f"{self.name} v{self.version} has no {modality} stream")
        return self.model_copy(
            update={
                "backbone": member.backbone,
                "trained": member.trained,
                "source_checkpoint": member.source_checkpoint,
                "spec": member.spec,
                "artifacts": member.artifacts,
                "streams": (),
                "fusion": None,
            }
        )

    def artifact(self, format: str, precision: str | None = None) -> Artifact | None:
        """The first artifact of a format (and precision, if given), or None."""
        for artifact in self.artifacts:
            if artifact.format == format and precision in (None, artifact.precision):
                return artifact
        return None
