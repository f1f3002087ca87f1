"""The runtime protocol and the choice of artifact and device for a model version."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple, Protocol

import numpy as np

from model_store import Manifest

logger = logging.getLogger("actserve.runtime")

Device = Literal["auto", "cpu", "cuda"]


class Outputs(NamedTuple):
    logits: np.ndarray  # (N, K) float32
    embedding: np.ndarray  # (N, D) float32


class Runtime(Protocol):
    """One loaded artifact. `run` is called from one inference thread at a time."""

    #: What runs where, e.g. "onnxruntime 1.31.1 CUDA fp16 (model.fp16.onnx)".
    description: str

    def run(self, clips: np.ndarray) -> Outputs: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RuntimeOptions:
    device: Device = "auto"
    #: Prefer the TorchScript artifact over ONNX when a version has both.
    prefer_torchscript: bool = False
    #: Use the fp16 ONNX artifact on CUDA when the version has one.
    prefer_fp16: bool = True
    #: Intra-op threads (0 = the runtime's default: all cores).
    threads: int = 0


def load_runtime(manifest: Manifest, version_dir: Path, options: RuntimeOptions) -> Runtime:
    """Load the version's best artifact for this machine and log one line saying which, where
    and why."""
    from service.runtimes.onnx import OnnxRuntime, cuda_unavailable_reason

    onnx_fp32 = manifest.artifact("onnx", "fp32")
    torchscript = manifest.artifact("torchscript")
    if torchscript is not None and (options.prefer_torchscript or onnx_fp32 is None):
        from service.runtimes.torchscript import TorchScriptRuntime

        runtime: Runtime = TorchScriptRuntime(version_dir / torchscript.file, options)
        logger.info("%s v%s: %s", manifest.name, manifest.version, runtime.description)
        return runtime
    if onnx_fp32 is None:
        raise ValueError(f"{manifest.name} v{manifest.version} has no ONNX or TorchScript artifact")
    reason = cuda_unavailable_reason() if options.device != "cpu" else "device set to cpu"
    if options.device == "cuda" and reason:
        raise RuntimeError(f"ACTSERVE_DEVICE=cuda but CUDA is unusable: {reason}")
    fp16 = manifest.artifact("onnx", "fp16")
    artifact = fp16 if reason is None and fp16 is not None and options.prefer_fp16 else onnx_fp32
    runtime = OnnxRuntime(
        version_dir / artifact.file, options, cuda=reason is None, precision=artifact.precision
    )
    why = "a CUDA device is usable" if reason is None else reason
    logger.info("%s v%s: %s, because %s", manifest.name, manifest.version, runtime.description, why)
    return runtime
