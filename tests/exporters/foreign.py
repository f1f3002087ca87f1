"""Video classifiers exported the way their users export them, not by actserve: other tensor
names, (N, T, C, H, W) input, outputs in a dict, no embedding output, and broken ones."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from backbones import VideoClassifier


class TimeFirst(nn.Module):
    """A zoo network behind an (N, T, C, H, W) input, returning (scores, features)."""

    def __init__(self, model: VideoClassifier) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, embedding = self.model.forward_outputs(video.transpose(1, 2))
        return logits, embedding


class ScoresOnly(TimeFirst):
    def forward(self, video: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(video)[0]


class AsDict(TimeFirst):
    def forward(self, video: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
        logits, embedding = super().forward(video)
        return {"scores": logits, "features": embedding}


class Tiny(nn.Module):
    """A small (N, C, T, H, W) classifier; `broken` makes it misbehave on purpose."""

    def __init__(self, classes: int = 5, broken: str | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, classes)
        self.broken = broken

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.conv(clips).relu().mean(dim=(2, 3, 4))
        if self.broken == "batch_norm":  # statistics of the batch, as in training mode
            features = features - features.mean(dim=0, keepdim=True)
        logits = self.fc(features)
        if self.broken == "nan":
            logits = logits * torch.log(-clips.abs().amax() - 1)
        return logits, features


def to_onnx(
    module: nn.Module,
    path: Path,
    shape: tuple[int, ...],
    *,
    input_name: str = "video",
    output_names: tuple[str, ...] = ("scores", "features"),
    dynamic_batch: bool = True,
) -> Path:
    """torch's TorchScript-based ONNX exporter, as most published ONNX files were made."""
    axes = {name: {0: "batch"} for name in (input_name, *output_names)} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (torch.randn(2, *shape),),
            str(path),
            input_names=[input_name],
            output_names=list(output_names),
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    return path


def to_torchscript(module: nn.Module, path: Path, shape: tuple[int, ...]) -> Path:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module.eval(), torch.randn(2, *shape), strict=False)
        torch.jit.save(traced, str(path))
    return path


def classifier_input(path: Path) -> str:
    """The tensor the last matrix product of a graph reads: the pooled features."""
    import onnx

    graph = onnx.load(str(path)).graph
    last = [n for n in graph.node if n.op_type in ("Gemm", "MatMul")][-1]
    return last.input[0]
