"""Model -> artifacts -> parity checks -> a published store version (-> an alias).

Every artifact is checked against the eager model before anything is published; one failed
check stops the export with the numbers and leaves the store untouched.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from pydantic import ValidationError

from backbones import VideoClassifier
from exporters.errors import ExportError, ParityError
from exporters.onnx import DEFAULT_OPSET, export_onnx, onnx_runner
from exporters.openvino import cpu_bf16, openvino_runner, openvino_version
from exporters.outputs import tensor_infos
from exporters.parity import Runner, check_parity
from exporters.precision import measure_agreement
from exporters.torchscript import export_torchscript, torchscript_runner
from model_store import (
    Artifact,
    Fusion,
    Manifest,
    ManifestDraft,
    ModelStore,
    Precision,
    PrecisionAgreement,
    SourceCheckpoint,
    StreamMember,
)
from model_store.spec import Modality, ModelSpec, Profile
from model_store.store import check_alias, check_name

FORMATS = ("onnx", "torchscript")
logger = logging.getLogger(__name__)

#: Reports a long step: `with step("Exporting ONNX"): ...`.
StepReporter = Callable[[str], AbstractContextManager[None]]


@contextmanager
def log_step(title: str) -> Iterator[None]:
    started = time.perf_counter()
    logger.info("%s …", title)
    yield
    logger.info("%s done in %.1f s", title, time.perf_counter() - started)


def describe_checkpoint(path: Path, layout: str) -> SourceCheckpoint:
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return SourceCheckpoint(file_name=path.name, sha256=digest, layout=layout)


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("actserve", "torch", "onnx", "onnxruntime-gpu", "onnxruntime", "openvino"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def export_to_store(
    model: VideoClassifier,
    spec: ModelSpec,
    store: ModelStore,
    *,
    trained: bool,
    name: str | None = None,
    formats: Sequence[str] = ("onnx",),
    fp16: bool = False,
    precision: Precision = "fp32",
    force: bool = False,
    agreement_weights: Mapping[str, VideoClassifier] | None = None,
    opset: int = DEFAULT_OPSET,
    alias: str | None = None,
    source: SourceCheckpoint | None = None,
    description: str = "",
    default_profile: Profile = Profile.ACCURATE,
    step: StepReporter = log_step,
) -> Manifest:
    """Export `model` in `formats` (plus an fp16 ONNX artifact with `fp16`), check each
    against the eager model, publish them as the next version of `name` (default: the
    backbone's name) and point `alias` at it.

    `precision` is the version's serving precision: below fp32 (`bf16`: OpenVINO on a CPU with
    bf16; `fp16`, the same as `fp16=True`: the fp16 artifact on GPUs) its agreement with fp32 is
    measured on the exported weights and on `agreement_weights` (e.g. the family's parity
    fixture) and recorded; below the bar nothing is published unless `force`."""
    if fp16:
        precision = "fp16" if precision == "fp32" else precision
    fp16 = precision == "fp16"
    name = _check_request(name or spec.backbone, alias, formats, fp16, precision)
    with tempfile.TemporaryDirectory(prefix="actserve-export-") as tmp:
        artifacts, files = export_artifacts(
            model, spec, Path(tmp), formats=formats, fp16=fp16, opset=opset, step=step
        )
        agreement = None
        if precision != "fp32":
            with step(f"Measuring {precision} against fp32"):
                agreement = _measure_precision(
                    model, spec, precision, files, opset, agreement_weights or {}, force
                )
        draft = ManifestDraft(
            backbone=spec.backbone,
            trained=trained,
            description=description,
            default_profile=default_profile,
            source_checkpoint=source,
            spec=spec,
            artifacts=artifacts,
            precision=precision,
            precision_agreement=agreement,
            exporter=tool_versions(),
        )
        return publish_version(store, name, draft, files, alias, step)


def _measure_precision(
    model: VideoClassifier,
    spec: ModelSpec,
    precision: str,
    files: dict[str, Path],
    opset: int,
    others: Mapping[str, VideoClassifier],
    force: bool,
) -> PrecisionAgreement:
    """The exported artifact at `precision` (and each of `others`, exported alike) against the
    eager fp32 model."""

    def runner_of(path: Path) -> tuple[Runner, str]:
        return openvino_runner(path, "bf16") if precision == "bf16" else onnx_runner(path)

    def make_runner(other: VideoClassifier, directory: Path) -> tuple[Runner, str]:
        path = directory / "model.onnx"
        export_onnx(other.eval().float(), spec, path, opset=opset, fp16=precision == "fp16")
        return runner_of(path)

    artifact = files["model.fp16.onnx" if precision == "fp16" else "model.onnx"]
    runner, runtime = runner_of(artifact)
    return measure_agreement(
        model,
        spec,
        precision,
        runner,
        runtime,
        also_on=others,
        make_runner=make_runner,
        force=force,
    )


@dataclass(frozen=True)
class Stream:
    """One stream of a two-stream export: its network, spec and source file."""

    model: VideoClassifier
    spec: ModelSpec
    trained: bool
    source: SourceCheckpoint | None = None


def export_two_stream_to_store(
    rgb: Stream,
    flow: Stream,
    store: ModelStore,
    *,
    weights: tuple[float, float] = (1.0, 1.5),
    name: str | None = None,
    formats: Sequence[str] = ("onnx",),
    fp16: bool = False,
    opset: int = DEFAULT_OPSET,
    alias: str | None = None,
    description: str = "",
    default_profile: Profile = Profile.ACCURATE,
    step: StepReporter = log_step,
) -> Manifest:
    """Export an RGB and a flow network as one two-stream version: each stream's artifacts
    (files `rgb.*` and `flow.*`) checked against its eager model like a one-stream export,
    fused by the weighted mean of their softmaxes with `weights` (rgb, flow)."""
    name = _check_request(name or f"{rgb.spec.backbone}-two-stream", alias, formats, fp16)
    classes = {(s.spec.num_classes, s.spec.labels) for s in (rgb, flow)}
    if len(classes) > 1:
        raise ExportError(
            f"the streams answer in different classes: rgb {rgb.spec.num_classes} "
            f"({rgb.spec.label_set or 'custom labels'}), flow {flow.spec.num_classes} "
            f"({flow.spec.label_set or 'custom labels'})"
        )
    members: list[StreamMember] = []
    with tempfile.TemporaryDirectory(prefix="actserve-export-") as tmp:
        files: dict[str, Path] = {}
        for modality, stream in ((Modality.RGB, rgb), (Modality.FLOW, flow)):
            if stream.spec.recipe.modality != modality:
                raise ExportError(
                    f"the {modality} stream's recipe is a {stream.spec.recipe.modality} one "
                    f"({stream.spec.backbone}, {stream.spec.recipe.in_channels} channels)"
                )
            artifacts, written = export_artifacts(
                stream.model,
                stream.spec,
                Path(tmp),
                formats=formats,
                fp16=fp16,
                opset=opset,
                step=step,
                prefix=f"{modality}.",
            )
            files.update(written)
            members.append(
                StreamMember(
                    modality=modality,
                    backbone=stream.spec.backbone,
                    trained=stream.trained,
                    source_checkpoint=stream.source,
                    spec=stream.spec,
                    artifacts=artifacts,
                )
            )
        try:
            draft = ManifestDraft(
                backbone=f"{rgb.spec.backbone}+{flow.spec.backbone}",
                trained=rgb.trained and flow.trained,
                description=description,
                default_profile=default_profile,
                spec=rgb.spec.model_copy(
                    update={"embedding_dim": rgb.spec.embedding_dim + flow.spec.embedding_dim}
                ),
                artifacts=(),
                # fp16 artifacts are checked against tolerance; agreement is measured for
                # one-stream versions only.
                precision="fp16" if fp16 else "fp32",
                exporter=tool_versions(),
                streams=tuple(members),
                fusion=Fusion(weights={Modality.RGB: weights[0], Modality.FLOW: weights[1]}),
            )
        except ValidationError as exc:
            raise ExportError(f"not a valid two-stream version: {exc}") from None
        return publish_version(store, name, draft, files, alias, step)


def export_artifacts(
    model: VideoClassifier,
    spec: ModelSpec,
    directory: Path,
    *,
    formats: Sequence[str],
    fp16: bool,
    opset: int,
    step: StepReporter,
    prefix: str = "",
) -> tuple[tuple[Artifact, ...], dict[str, Path]]:
    """Write and parity-check each artifact of `model` in `directory` (file names start with
    `prefix`); raises ParityError on the first artifact over tolerance."""
    model = model.eval().float()
    inputs, outputs = tensor_infos(spec)
    artifacts: list[Artifact] = []
    files: dict[str, Path] = {}
    planned = [(f, "fp32") for f in formats] + ([("onnx", "fp16")] if fp16 else [])
    for fmt, precision in planned:
        file_name = {"onnx": "model.onnx", "torchscript": "model.ts"}[fmt]
        if precision == "fp16":
            file_name = "model.fp16.onnx"
        file_name = prefix + file_name
        path = directory / file_name
        label = f"{prefix}{fmt} ({precision})"
        if fmt == "onnx":
            with step(f"Exporting {label}, opset {opset}"):
                export_onnx(model, spec, path, opset=opset, fp16=precision == "fp16")
            runner, runtime = onnx_runner(path)
        else:
            with step(f"Exporting {label}"):
                export_torchscript(model, spec, path)
            runner, runtime = torchscript_runner(path)
        with step(f"Checking {label} against the eager model on {runtime}"):
            report = check_parity(model, runner, spec, runtime=runtime, precision=precision)
        if not report.passed:
            raise ParityError(file_name, report)
        also = []  # the same file on OpenVINO, which serves ONNX fp32 on x86 CPUs
        if fmt == "onnx" and precision == "fp32" and openvino_version() is not None:
            ov_runner, ov_runtime = openvino_runner(path, "fp32")
            with step(f"Checking {label} against the eager model on {ov_runtime}"):
                more = check_parity(model, ov_runner, spec, runtime=ov_runtime)
            if not more.passed:
                raise ParityError(file_name, more)
            also.append(more)
        artifacts.append(
            Artifact(
                format=fmt,
                file=file_name,
                precision=precision,
                opset=opset if fmt == "onnx" else None,
                inputs=inputs,
                outputs=outputs,
                parity=report,
                runtime_parity=tuple(also),
            )
        )
        files[file_name] = path
    return tuple(artifacts), files


def _check_request(
    name: str, alias: str | None, formats: Sequence[str], fp16: bool, precision: str = "fp32"
) -> str:
    name = check_name(name)
    if alias is not None:
        check_alias(alias)
    unknown = set(formats) - set(FORMATS)
    if unknown or not formats:
        raise ExportError(f"formats must be among {', '.join(FORMATS)}; got {list(formats)}")
    if fp16 and "onnx" not in formats:
        raise ExportError("--fp16 makes an fp16 ONNX artifact; include the onnx format")
    if precision == "bf16":
        if "onnx" not in formats:
            raise ExportError("bf16 runs the ONNX artifact on OpenVINO; include the onnx format")
        if openvino_version() is None:
            raise ExportError("bf16 runs on OpenVINO, which cannot be imported here")
        if not cpu_bf16():
            raise ExportError(
                "bf16 is measured where it runs: this CPU has no AVX512-BF16 or AMX, so "
                "OpenVINO would compute in fp32; export bf16 versions on a CPU that has them"
            )
    return name


def publish_version(
    store: ModelStore,
    name: str,
    draft: ManifestDraft,
    files: dict[str, Path],
    alias: str | None,
    step: StepReporter = log_step,
) -> Manifest:
    """Publish checked artifacts as the next version of `name` and point `alias` at it."""
    with step(f"Publishing {name} to {store.root}"):
        manifest = store.publish(name, draft, files)
    if alias is not None:
        store.promote(name, manifest.version, alias)
    return manifest
