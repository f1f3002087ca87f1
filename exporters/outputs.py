"""The module every exporter traces: clips in, (logits, embedding) out, float32 at the edges."""

from __future__ import annotations

import copy

import torch
from torch import nn

from backbones import VideoClassifier
from model_store.manifest import TensorInfo
from model_store.spec import ModelSpec

INPUT_NAME = "clips"
OUTPUT_NAMES = ("logits", "embedding")


class ClipsToOutputs(nn.Module):
    """Wraps a backbone for export. With `fp16` the weights and activations are half
    precision but the input and outputs stay float32, so every artifact of a model version
    takes and returns the same tensors."""

    def __init__(self, model: VideoClassifier, *, fp16: bool = False) -> None:
        super().__init__()
        self.fp16 = fp16
        self.model = (copy.deepcopy(model).half() if fp16 else model).eval()

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.fp16:
            clips = clips.half()
        logits, embedding = self.model.forward_outputs(clips)
        return logits.float(), embedding.float()


def tensor_infos(spec: ModelSpec) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """The artifact's inputs and outputs as the manifest records them."""
    inputs = (TensorInfo(name=INPUT_NAME, shape=("batch", *spec.recipe.clip_shape)),)
    outputs = (
        TensorInfo(name="logits", shape=("batch", spec.num_classes)),
        TensorInfo(name="embedding", shape=("batch", spec.embedding_dim)),
    )
    return inputs, outputs
