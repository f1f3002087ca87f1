"""TorchScript via torch (imported only when a version is served this way)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from service.errors import ModelLoadError
from service.runtimes.base import Outputs, RuntimeOptions


class TorchScriptRuntime:
    def __init__(self, path: Path, options: RuntimeOptions) -> None:
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
        self.description = (
            f"torch.jit {torch.__version__} {self._device.type.upper()} ({path.name})"
        )

    def run(self, clips: np.ndarray) -> Outputs:
        torch = self._torch
        with torch.inference_mode():
            logits, embedding = self._module(torch.from_numpy(clips).to(self._device))
        return Outputs(logits.float().cpu().numpy(), embedding.float().cpu().numpy())

    def close(self) -> None:
        self._module = None
