"""ONNX artifacts with torch's current (torch.export-based) exporter, checked with the ONNX
checker, run with ONNX Runtime."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from backbones import VideoClassifier
from exporters.errors import ExportError
from exporters.outputs import INPUT_NAME, OUTPUT_NAMES, ClipsToOutputs
from exporters.parity import Runner, parity_batch
from model_store.spec import ModelSpec

DEFAULT_OPSET = 18


def export_onnx(
    model: VideoClassifier,
    spec: ModelSpec,
    path: Path,
    *,
    opset: int = DEFAULT_OPSET,
    fp16: bool = False,
) -> Path:
    """Write `path`: input `clips` (batch, C, T, H, W) with a dynamic batch axis and the other
    axes fixed by the recipe; outputs `logits` (batch, K) and `embedding` (batch, D)."""
    module = ClipsToOutputs(model, fp16=fp16)
    example = parity_batch(spec, 2)
    batch = torch.export.Dim("batch", min=1)
    # The exporter logs every torchvision op it cannot register (torchvision is not a
    # dependency) and warns about deprecated pytree helpers; neither concerns these graphs.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=FutureWarning)
            warnings.simplefilter("ignore", category=UserWarning)
            torch.onnx.export(
                module,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_shapes={"clips": {0: batch}},
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    except Exception as exc:  # the exporter raises many types; report them as one
        raise ExportError(f"torch.onnx.export failed for {spec.backbone}: {exc}") from exc
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the ONNX checker rejected {path.name}: {exc}") from exc
    return path


def onnx_runner(path: Path) -> tuple[Runner, str]:
    """An ONNX Runtime session over the artifact and its description: CUDA when torch sees a
    device (onnxruntime-gpu lists its CUDA provider even on machines without one)."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=providers)
    used = session.get_providers()[0].removesuffix("ExecutionProvider")

    def run(clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, embedding = session.run(list(OUTPUT_NAMES), {INPUT_NAME: clips})
        return logits, embedding

    return run, f"onnxruntime {ort.__version__} {used}"
