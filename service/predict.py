"""From per-view outputs to what a client reads: averaged probabilities, top-k labels, the
mean embedding and per-clip scores."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model_store import ModelSpec
from service.schemas import ClipPrediction, LabelScore


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def top_labels(probabilities: np.ndarray, spec: ModelSpec, k: int) -> list[LabelScore]:
    """The k most probable classes of a (K,) probability vector, best first."""
    k = min(k, len(probabilities))
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [
        LabelScore(label=spec.label_of(int(i)), index=int(i), score=float(probabilities[i]))
        for i in order
    ]


def average_probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax per view, then the mean over views (mmaction2's `average_clips='prob'`)."""
    return softmax(logits).mean(axis=0)


def per_clip_predictions(
    logits: np.ndarray,
    clip_of_view: Sequence[int],
    clip_times: Sequence[tuple[float, float]],
    spec: ModelSpec,
    k: int,
) -> list[ClipPrediction]:
    """Scores of each clip (its crops averaged) with the clip's start and end in seconds."""
    probabilities = softmax(logits)
    views = np.asarray(clip_of_view)
    clips = []
    for clip, (start, end) in enumerate(clip_times):
        mine = probabilities[views == clip]
        if len(mine):
            clips.append(
                ClipPrediction(
                    clip=clip, start_s=start, end_s=end, top_k=top_labels(mine.mean(0), spec, k)
                )
            )
    return clips
