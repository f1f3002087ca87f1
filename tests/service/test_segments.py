"""Windows into labelled segments: runs of the same confident top-1, gaps where unsure."""

from __future__ import annotations

import pytest

from service.responses import merge_segments
from service.schemas import ClipPrediction, LabelScore


def window(number: int, label: str, score: float, *, length: float = 2.0) -> ClipPrediction:
    best = LabelScore(label=label, index=ord(label[0]), score=score)
    start = number * length
    return ClipPrediction(clip=number, start_s=start, end_s=start + length, top_k=[best])


def test_consecutive_agreeing_windows_merge_and_unsure_ones_split() -> None:
    windows = [
        window(0, "walk", 0.9),
        window(1, "walk", 0.7),
        window(2, "run", 0.8),
        window(3, "run", 0.3),  # unsure: no segment here
        window(4, "run", 0.9),
        window(5, "walk", 0.6),
    ]
    segments = merge_segments(windows, min_score=0.5)
    assert [(s.label, s.start_s, s.end_s, s.windows) for s in segments] == [
        ("walk", 0.0, 4.0, 2),
        ("run", 4.0, 6.0, 1),
        ("run", 8.0, 10.0, 1),
        ("walk", 10.0, 12.0, 1),
    ]
    assert segments[0].score == pytest.approx(0.8)
    assert merge_segments(windows, min_score=0.0)[1].windows == 3  # 0.3 joins its run


def test_overlapping_windows_span_first_start_to_last_end() -> None:
    windows = [
        ClipPrediction(clip=i, start_s=i * 1.0, end_s=i * 1.0 + 2.5, top_k=[best])
        for i, best in enumerate([LabelScore(label="a", index=0, score=0.9)] * 3)
    ]
    (segment,) = merge_segments(windows, min_score=0.5)
    assert (segment.start_s, segment.end_s, segment.windows) == (0.0, 4.5, 3)
    assert merge_segments([], min_score=0.5) == []
