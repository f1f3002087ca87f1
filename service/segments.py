"""Segments: a video's windows turned into one labelled stretch per action.

Pure numpy over the windows' probability rows (W, C) and their times; nothing here decodes or
runs a model. Window by window, a model's top-1 flickers: a window that straddles a camera
cut, or catches an action's first or last moment, scores low or picks another class. Taken
one window at a time (`SegmentRule.raw()`), a 20-minute recording with a cut every 2 s
breaks into hundreds of segments for ten actions. So, in order:

    weigh      a window that straddles a shot boundary counts `cut_weight` (it sees two shots)
    smooth     each window's probabilities averaged with its neighbours' (`smooth` windows,
               centred, by those weights)
    label      a window's label is its smoothed top-1, if that reaches `min_score` (else none)
    runs       consecutive windows with one label are one run
    drop       runs shorter than `min_duration_s` are dropped: their time becomes a gap (in
               a video shorter than twice that, runs shorter than half the video)
    join       runs of one label with at most `gap_s` between them are one segment, whatever
               filled the gap (unclear windows, a dropped run, a shot change)
    drop       segments still shorter than `min_duration_s` are dropped

A segment may span any number of shots of one action; its score is the label's probability
averaged over its own windows (by weight), as before smoothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SegmentRule", "SegmentSpan", "find_segments"]


class SegmentRule(BaseModel):
    """How windows become segments; the defaults were chosen on generated recordings with
    known actions (benchmarks/segments.py, docs: "Segments")."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_score: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="The smoothed top-1 probability a window needs to belong to a segment.",
    )
    smooth: int = Field(
        3,
        ge=1,
        le=99,
        description="Windows averaged around each window before labelling (centred; 1: none).",
    )
    gap_s: float = Field(
        3.0, ge=0.0, description="Segments of one label this close (seconds) are joined."
    )
    min_duration_s: float = Field(
        3.0, ge=0.0, description="Shorter runs and segments (seconds) are dropped."
    )
    cut_weight: float = Field(
        0.25,
        ge=0.0,
        le=1.0,
        description="Weight of a window that straddles a shot boundary, in smoothing and scores.",
    )

    @classmethod
    def raw(cls, min_score: float = 0.5) -> SegmentRule:
        """Window by window, as segments were before smoothing (for comparison)."""
        return cls(min_score=min_score, smooth=1, gap_s=0.0, min_duration_s=0.0, cut_weight=1.0)


@dataclass(frozen=True)
class SegmentSpan:
    """One segment: class `index` from `start_s` to `end_s` over `windows` windows."""

    index: int
    start_s: float
    end_s: float
    score: float
    windows: int


def find_segments(
    probabilities: np.ndarray,
    times: Sequence[tuple[float, float]],
    rule: SegmentRule,
    cuts: Sequence[float] = (),
) -> list[SegmentSpan]:
    """Segments of windows in time order: `probabilities` (W, C) with each window's (start,
    end) seconds; `cuts` are shot boundaries in seconds."""
    probabilities = np.asarray(probabilities, np.float64)
    if probabilities.size == 0:
        return []
    bounds = np.asarray(times, np.float64).reshape(-1, 2)
    weights = _weights(bounds, cuts, rule.cut_weight)
    smoothed = _smooth(probabilities, weights, rule.smooth)
    labels = np.where(smoothed.max(1) >= rule.min_score, smoothed.argmax(1), -1)

    def duration(run: list[int]) -> float:  # [label, first window, last window]
        return float(bounds[run[2], 1] - bounds[run[1], 0])

    runs: list[list[int]] = []
    for window, label in enumerate(labels.tolist()):
        if label < 0:
            continue
        if runs and runs[-1][0] == label and runs[-1][2] == window - 1:
            runs[-1][2] = window
        else:
            runs.append([label, window, window])
    # A video shorter than twice the minimum keeps its runs of at least half its length.
    span = float(bounds[-1, 1] - bounds[0, 0])
    shortest = min(rule.min_duration_s, span / 2)
    runs = [run for run in runs if duration(run) >= shortest]
    joined: list[list[int]] = []
    for run in runs:
        previous = joined[-1] if joined else None
        gap = bounds[run[1], 0] - bounds[previous[2], 1] if previous else np.inf
        if previous and previous[0] == run[0] and gap <= rule.gap_s + 1e-9:
            previous[2] = run[2]
        else:
            joined.append(run)
    return [
        _span(probabilities, weights, labels, bounds, run)
        for run in joined
        if duration(run) >= shortest
    ]


def _weights(bounds: np.ndarray, cuts: Sequence[float], cut_weight: float) -> np.ndarray:
    """1 per window, `cut_weight` for a window with a shot boundary strictly inside it (a
    boundary within a frame or so of its edges leaves it in one shot)."""
    weights = np.ones(len(bounds))
    edge = 0.05
    for cut in cuts:
        inside = (bounds[:, 0] + edge < cut) & (cut < bounds[:, 1] - edge)
        weights[inside] = cut_weight
    return weights


def _smooth(probabilities: np.ndarray, weights: np.ndarray, width: int) -> np.ndarray:
    """Each row averaged with its `width // 2` neighbours on either side, by weight (rows of
    zero weight still count a little, so a stretch of only straddling windows keeps a value)."""
    if width <= 1:
        return probabilities
    half = width // 2
    w = np.maximum(weights, 1e-6)[:, None]
    weighted = np.cumsum(np.vstack([np.zeros((1, probabilities.shape[1])), probabilities * w]), 0)
    total = np.cumsum(np.concatenate([[0.0], w[:, 0]]))
    rows = np.arange(len(probabilities))
    low, high = np.maximum(rows - half, 0), np.minimum(rows + half + 1, len(probabilities))
    return (weighted[high] - weighted[low]) / (total[high] - total[low])[:, None]


def _span(
    probabilities: np.ndarray,
    weights: np.ndarray,
    labels: np.ndarray,
    bounds: np.ndarray,
    run: list[int],
) -> SegmentSpan:
    label, first, last = run
    mine = np.arange(first, last + 1)
    own = mine[labels[mine] == label]  # the windows of this label (not the gaps joined over)
    w = np.maximum(weights[own], 1e-6)
    score = float(np.average(probabilities[own, label], weights=w))
    return SegmentSpan(label, float(bounds[first, 0]), float(bounds[last, 1]), score, len(own))
