"""TorchScript artifacts: a traced graph that `torch.jit.load` runs without this project's code.

torch 2.x deprecates `torch.jit.trace` in favour of `torch.export`, but a `.pt2` program is not
loadable by plain `torch.jit.load` consumers (TorchServe, libtorch C++); TorchScript stays the
format those runtimes read. The model's spec travels inside the file as `actserve/spec.json`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from backbones import VideoClassifier
from exporters.errors import ExportError
from exporters.outputs import ClipsToOutputs
from exporters.parity import Runner, parity_batch
from model_store.spec import ModelSpec

SPEC_ENTRY = "actserve/spec.json"


def export_torchscript(model: VideoClassifier, spec: ModelSpec, path: Path) -> Path:
    module = ClipsToOutputs(model)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            traced = torch.jit.trace(module, parity_batch(spec, 2), check_trace=False)
            torch.jit.save(traced, str(path), _extra_files={SPEC_ENTRY: spec.model_dump_json()})
    except Exception as exc:
        raise ExportError(f"torch.jit.trace failed for {spec.backbone}: {exc}") from exc
    return path


def torchscript_runner(path: Path) -> tuple[Runner, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            logits, embedding = module(torch.from_numpy(clips))
        return logits.numpy(), embedding.numpy()

    return run, f"torch.jit {torch.__version__} CPU"
