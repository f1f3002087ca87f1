"""The arithmetic of scores and embeddings: pure numpy, no service types, a leaf every other
module may import (the engine's two-stream fusion, the responses, `actserve batch` and
`actserve probe`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in float64."""
    z = logits.astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def average_probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax per view, then the mean over views (mmaction2's `average_clips='prob'`)."""
    return softmax(logits).mean(axis=0)


def mean_embedding(embedding: np.ndarray) -> np.ndarray:
    """The (D,) float32 mean of per-view embeddings (V, D)."""
    return embedding.mean(axis=0, dtype=np.float64).astype(np.float32)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two vectors; 0 when either is all zeros (no direction to compare)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.clip(a @ b / norms, -1.0, 1.0)) if norms > 0 else 0.0


def fuse_logits(logits: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """View by view, the streams' weighted mean softmax as log-probabilities:
    log(Σ w_s softmax_s / Σ w_s), for `logits` (V, K) and `weights` by stream name.

    Averaging the fused views' softmax over views equals fusing each stream's average, so the
    usual averaging downstream gives the two-stream papers' score fusion.
    """
    total = sum(weights[name] for name in logits)
    mixed = sum(weights[name] * softmax(values) for name, values in logits.items()) / total
    return np.log(np.maximum(mixed, np.finfo(np.float64).tiny))


def window_probabilities(
    logits: np.ndarray, clip_of_view: Sequence[int], clips: int
) -> tuple[np.ndarray, list[int]]:
    """Each window's probabilities (its views' softmax averaged), (W, K), for the windows that
    have views, and which windows those are."""
    probabilities = softmax(logits)
    views = np.asarray(clip_of_view)
    present = [clip for clip in range(clips) if (views == clip).any()]
    rows = [probabilities[views == clip].mean(0) for clip in present]
    return np.asarray(rows).reshape(len(present), probabilities.shape[-1]), present
