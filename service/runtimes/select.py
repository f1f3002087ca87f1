"""Which runtime runs a model version, on which artifact: one decision, logged with its reason.

`ACTSERVE_RUNTIME` (the `runtime.kind` setting):

- `auto`: ONNX Runtime's CUDA provider where a GPU is usable, OpenVINO on x86 CPUs, ONNX
  Runtime's CPU provider otherwise (and TorchScript for a version that has only that);
- `onnxruntime`, `openvino`, `torchscript`: that runtime, or a `ModelLoadError` saying why not.

A version runs at the precision it was exported and checked at (its manifest's `precision`) or
higher, never lower: a bf16 version runs in fp32 where the CPU has no bf16.
"""

from __future__ import annotations

import logging
from pathlib import Path

from model_store import Manifest
from service.errors import ModelLoadError
from service.runtimes.base import Runtime, RuntimeOptions
from service.runtimes.onnx import OnnxRuntime, cuda_unavailable_reason
from service.runtimes.openvino import (
    OpenVinoRuntime,
    openvino_unavailable_reason,
    serving_precision,
)
from service.runtimes.torchscript import TorchScriptRuntime

logger = logging.getLogger("actserve.runtime")


def load_runtime(manifest: Manifest, version_dir: Path, options: RuntimeOptions) -> Runtime:
    """Load the version's best artifact for this machine and log one line saying which, where
    and why. Raises `ModelLoadError` when none can run here."""
    label = f"{manifest.name} v{manifest.version}"
    onnx_fp32 = manifest.artifact("onnx", "fp32")
    torchscript = manifest.artifact("torchscript")
    wants_torchscript = options.kind == "torchscript" or (
        options.kind == "auto" and (options.prefer_torchscript or onnx_fp32 is None)
    )
    if wants_torchscript and torchscript is not None:
        runtime: Runtime = TorchScriptRuntime(
            version_dir / torchscript.file, options, manifest.spec
        )
        logger.info("%s: %s", label, runtime.description)
        return runtime
    if options.kind == "torchscript":
        raise ModelLoadError(f"ACTSERVE_RUNTIME=torchscript but {label} has no TorchScript file")
    if onnx_fp32 is None:
        raise ModelLoadError(f"{label} has no ONNX or TorchScript artifact")

    cuda_reason = cuda_unavailable_reason() if options.device != "cpu" else "device set to cpu"
    if options.device == "cuda" and cuda_reason:
        raise ModelLoadError(f"ACTSERVE_DEVICE=cuda but CUDA is unusable: {cuda_reason}")
    if options.kind == "openvino" or (options.kind == "auto" and cuda_reason is not None):
        ov_reason = openvino_unavailable_reason()
        if options.kind == "openvino" and ov_reason is not None:
            raise ModelLoadError(f"ACTSERVE_RUNTIME=openvino but {ov_reason}")
        if ov_reason is None:
            precision, changed = serving_precision(manifest.precision)
            digest = manifest.files.get(onnx_fp32.file)
            runtime = OpenVinoRuntime(
                version_dir / onnx_fp32.file,
                options,
                precision=precision,
                spec=manifest.spec,
                digest=digest.sha256 if digest is not None else None,
            )
            why = "ACTSERVE_RUNTIME=openvino" if options.kind == "openvino" else "an x86 CPU"
            why += f" and {cuda_reason}" if options.kind == "auto" else ""
            logger.info("%s: %s, because %s", label, runtime.description, why)
            if changed:
                logger.info("%s: %s", label, changed)
            return runtime
        cuda_reason += f"; {ov_reason}"

    fp16 = manifest.artifact("onnx", "fp16")
    use_cuda = cuda_reason is None
    artifact = fp16 if use_cuda and fp16 is not None and options.prefer_fp16 else onnx_fp32
    runtime = OnnxRuntime(
        version_dir / artifact.file,
        options,
        cuda=use_cuda,
        precision=artifact.precision,
        spec=manifest.spec,
    )
    why = "a CUDA device is usable" if use_cuda else cuda_reason
    if options.kind == "onnxruntime":
        why += " (ACTSERVE_RUNTIME=onnxruntime)"
    logger.info("%s: %s, because %s", label, runtime.description, why)
    return runtime
