"""Which artifact of a model version runs, and where: one decision, logged once with its reason."""

from __future__ import annotations

import logging
from pathlib import Path

from model_store import Manifest
from service.errors import ModelLoadError
from service.runtimes.base import Runtime, RuntimeOptions
from service.runtimes.onnx import OnnxRuntime, cuda_unavailable_reason
from service.runtimes.torchscript import TorchScriptRuntime

logger = logging.getLogger("actserve.runtime")


def load_runtime(manifest: Manifest, version_dir: Path, options: RuntimeOptions) -> Runtime:
    """Load the version's best artifact for this machine and log one line saying which, where
    and why. Raises `ModelLoadError` when none can run here."""
    onnx_fp32 = manifest.artifact("onnx", "fp32")
    torchscript = manifest.artifact("torchscript")
    if torchscript is not None and (options.prefer_torchscript or onnx_fp32 is None):
        runtime: Runtime = TorchScriptRuntime(
            version_dir / torchscript.file, options, manifest.spec
        )
        logger.info("%s v%s: %s", manifest.name, manifest.version, runtime.description)
        return runtime
    if onnx_fp32 is None:
        raise ModelLoadError(
            f"{manifest.name} v{manifest.version} has no ONNX or TorchScript artifact"
        )
    reason = cuda_unavailable_reason() if options.device != "cpu" else "device set to cpu"
    if options.device == "cuda" and reason:
        raise ModelLoadError(f"ACTSERVE_DEVICE=cuda but CUDA is unusable: {reason}")
    fp16 = manifest.artifact("onnx", "fp16")
    artifact = fp16 if reason is None and fp16 is not None and options.prefer_fp16 else onnx_fp32
    runtime = OnnxRuntime(
        version_dir / artifact.file,
        options,
        cuda=reason is None,
        precision=artifact.precision,
        spec=manifest.spec,
    )
    why = "a CUDA device is usable" if reason is None else reason
    logger.info("%s v%s: %s, because %s", manifest.name, manifest.version, runtime.description, why)
    return runtime
