"""TorchScript via torch (imported only when a version is served this way)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from model_store.spec import ModelSpec, TensorNames
from service.errors import ModelLoadError
from service.runtimes.base import Outputs, RuntimeOptions, to_layout


class TorchScriptRuntime:
    def __init__(self, path: Path, options: RuntimeOptions, spec: ModelSpec | None = None) -> None:
        import torch

        cuda = options.device != "cpu" and torch.cuda.is_available()
        if options.device == "cuda" and not cuda:
            raise ModelLoadError("ACTSERVE_DEVICE=cuda but torch sees no CUDA device")
        if options.threads:
            torch.set_num_threads(options.threads)
        self._device = torch.device("cuda" if cuda else "cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=DeprecationWarning)
            self._module = torch.jit.load(str(path), map_location=self._device).eval()
        self._torch = torch
        self._names = spec.tensors if spec is not None else TensorNames()
        self._layout = spec.recipe.layout if spec is not None else None
        self.description = (
            f"torch.jit {torch.__version__} {self._device.type.upper()} ({path.name})"
        )

    def run(self, clips: np.ndarray) -> Outputs:
        torch = self._torch
        if self._layout is not None:
            clips = to_layout(clips, self._layout)
        with torch.inference_mode():
            result = self._module(torch.from_numpy(clips).to(self._device))
        logits = self._names.pick(result, "logits")
        embedding = self._names.pick(result, "embedding")
        return Outputs(logits.float().cpu().numpy(), embedding.float().cpu().numpy())

    def close(self) -> None:
        self._module = None
