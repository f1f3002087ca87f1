"""From scored windows to moments: adjacent windows of one video (and one class) merge into
one stretch of time, scored by its best window, and the moments are ranked.

    hits = index.search(space, query, k=200)
    moments = merge_moments(hits, top_k=10)     # [Moment(video_id, start_s, end_s, score, ...)]

Windows are back to back, so two windows are adjacent when one starts where the other ends
(within `GAP_S`, the rounding of frame times).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from window_index.store import Hit, Windows

#: Seconds between a window's end and the next one's start that still count as adjacent.
GAP_S = 0.05
#: How far below (or above) a moment's best window an adjacent window may score and still
#: join it: cosine similarity for searches by example (class searches pass 1: every window
#: kept is of the class).
MAX_DROP = 0.15


@dataclass(frozen=True)
class Moment:
    """A stretch of one video: merged adjacent windows, scored by the best of them."""

    video_id: str
    start_s: float
    end_s: float
    score: float
    windows: int
    label: str | None = None


def merge_moments(
    hits: Iterable[Hit], *, top_k: int, gap_s: float = GAP_S, max_drop: float = MAX_DROP
) -> list[Moment]:
    """Merge adjacent hits of one video and label into moments, as long as each scores
    within `max_drop` of the moment's best (a weak neighbour of a strong stretch is a moment
    of its own); the `top_k` best, ranked by score (ties: earlier video time first)."""
    runs: dict[tuple[str, str | None], list[Hit]] = defaultdict(list)
    for hit in hits:
        runs[hit.video_id, hit.label].append(hit)
    moments = []
    for (video, label), found in runs.items():
        found.sort(key=lambda h: h.start_s)
        first = found[0]
        start, end, best, count = first.start_s, first.end_s, first.score, 1
        for hit in found[1:]:
            if hit.start_s <= end + gap_s and abs(hit.score - best) <= max_drop:
                end, best, count = max(end, hit.end_s), max(best, hit.score), count + 1
                continue
            moments.append(Moment(video, start, end, best, count, label))
            start, end, best, count = hit.start_s, hit.end_s, hit.score, 1
        moments.append(Moment(video, start, end, best, count, label))
    moments.sort(key=lambda m: (-m.score, m.video_id, m.start_s))
    return moments[:top_k]


def score_classes(
    windows: Windows,
    weight: np.ndarray,
    bias: np.ndarray,
    labels: tuple[str, ...],
    *,
    wanted: Iterable[int],
    threshold: float,
    gate: np.ndarray | None = None,
) -> list[Hit]:
    """Every window through a linear head (`softmax(vectors @ weight.T + bias)`, the probe's
    logits on the base model's embeddings): the windows whose top class is one of `wanted`
    with at least `threshold` of probability (and, if given, `gate` true: an open-set
    probe's known windows), as hits labelled with that class."""
    wanted = np.fromiter(wanted, dtype=np.int64)
    if len(windows) == 0:
        return []
    logits = windows.vectors @ np.asarray(weight, dtype=np.float32).T
    logits += np.asarray(bias, dtype=np.float32)
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    top = logits.argmax(axis=1)
    score = logits[np.arange(len(top)), top] / logits.sum(axis=1)
    keep = np.isin(top, wanted) & (score >= threshold)
    if gate is not None:
        keep &= gate
    keep = np.flatnonzero(keep)
    return [
        Hit(
            str(windows.video_ids[i]),
            float(windows.start_s[i]),
            float(windows.end_s[i]),
            float(score[i]),
            labels[top[i]],
        )
        for i in keep
    ]
