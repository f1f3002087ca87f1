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
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from importlib import metadata
from pathlib import Path

from backbones import VideoClassifier
from exporters.errors import ExportError, ParityError
from exporters.onnx import DEFAULT_OPSET, export_onnx, onnx_runner
from exporters.outputs import tensor_infos
from exporters.parity import check_parity
from exporters.torchscript import export_torchscript, torchscript_runner
from model_store import Artifact, Manifest, ManifestDraft, ModelStore, SourceCheckpoint
from model_store.spec import ModelSpec, Profile
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
    for package in ("actserve", "torch", "onnx", "onnxruntime-gpu", "onnxruntime"):
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
    opset: int = DEFAULT_OPSET,
    alias: str | None = None,
    source: SourceCheckpoint | None = None,
    description: str = "",
    default_profile: Profile = Profile.ACCURATE,
    step: StepReporter = log_step,
) -> Manifest:
    """Export `model` in `formats` (plus an fp16 ONNX artifact with `fp16`), check each
    against the eager model, publish them as the next version of `name` (default: the
    backbone's name) and point `alias` at it."""
    name = check_name(name or spec.backbone)
    if alias is not None:
        check_alias(alias)
    unknown = set(formats) - set(FORMATS)
    if unknown or not formats:
        raise ExportError(f"formats must be among {', '.join(FORMATS)}; got {list(formats)}")
    if fp16 and "onnx" not in formats:
        raise ExportError("--fp16 makes an fp16 ONNX artifact; include the onnx format")
    model = model.eval().float()
    inputs, outputs = tensor_infos(spec)
    artifacts: list[Artifact] = []
    files: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="actserve-export-") as tmp:
        planned = [(f, "fp32") for f in formats] + ([("onnx", "fp16")] if fp16 else [])
        for fmt, precision in planned:
            file_name = {"onnx": "model.onnx", "torchscript": "model.ts"}[fmt]
            if precision == "fp16":
                file_name = "model.fp16.onnx"
            path = Path(tmp) / file_name
            label = f"{fmt} ({precision})"
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
            artifacts.append(
                Artifact(
                    format=fmt,
                    file=file_name,
                    precision=precision,
                    opset=opset if fmt == "onnx" else None,
                    inputs=inputs,
                    outputs=outputs,
                    parity=report,
                )
            )
            files[file_name] = path
        draft = ManifestDraft(
            backbone=spec.backbone,
            trained=trained,
            description=description,
            default_profile=default_profile,
            source_checkpoint=source,
            spec=spec,
            artifacts=tuple(artifacts),
            exporter=tool_versions(),
        )
        with step(f"Publishing {name} to {store.root}"):
            manifest = store.publish(name, draft, files)
    if alias is not None:
        store.promote(name, manifest.version, alias)
    return manifest
