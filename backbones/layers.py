"""Pieces shared by every backbone family: the common network face and the classifier head."""

from __future__ import annotations

import torch
from torch import nn

from backbones.errors import ClipShapeError


class ClassifierHead(nn.Module):
    """Dropout (identity in eval) then a linear layer: embedding (N, D) -> logits (N, K)."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(features))


class VideoClassifier(nn.Module):
    """The face every backbone shows: clips (N, C, T, H, W) in, logits (N, K) out.

    Subclasses build `stem`, `stages` and `head` and implement `forward_features`, which
    returns the pooled embedding (N, D) that `head` turns into logits. `create_model` attaches
    the model's `ModelSpec` as `spec`.
    """

    #: Shortest clip (frames) and smallest frame side the network's geometry accepts.
    min_frames: int = 1
    min_side: int = 1
    #: Clip lengths must be a multiple of this (e.g. TPN's non-overlapping temporal windows).
    frame_multiple: int = 1

    def __init__(self, *, in_channels: int, embedding_dim: int, num_classes: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.embedding_dim = embedding_dim
        self.num_classes = num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, embedding) from one pass: what exported artifacts return."""
        features = self.forward_features(x)
        return self.forward_head(features), features

    def check_clip(self, x: torch.Tensor) -> None:
        """Reject inputs the geometry cannot take, before they fail deep inside (or worse,
        run and silently mix batch and time)."""
        if torch.jit.is_tracing():  # shapes are the exporter's recipe shape; keep the graph clean
            return
        if x.dim() != 5:
            raise ClipShapeError(
                f"{type(self).__name__} takes clips shaped (N, C, T, H, W); got {tuple(x.shape)}"
            )
        _, channels, frames, height, width = x.shape
        if channels != self.in_channels:
            raise ClipShapeError(
                f"{type(self).__name__} takes {self.in_channels} input channels; "
                f"got {channels} in a clip shaped {tuple(x.shape)}"
            )
        if frames < self.min_frames or min(height, width) < self.min_side:
            raise ClipShapeError(
                f"{type(self).__name__} needs at least {self.min_frames} frames of at least "
                f"{self.min_side}x{self.min_side} pixels; got a clip shaped {tuple(x.shape)}"
            )
        if frames % self.frame_multiple:
            raise ClipShapeError(
                f"{type(self).__name__} takes clips of a multiple of {self.frame_multiple} "
                f"frames; got a clip shaped {tuple(x.shape)}"
            )
