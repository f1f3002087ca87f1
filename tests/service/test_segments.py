"""Windows into labelled segments: smoothed, joined across gaps and shot changes, short runs
dropped; and window by window (`SegmentRule.raw()`) as before."""

from __future__ import annotations

import numpy as np
import pytest

from service.segments import SegmentRule, find_segments

LENGTH = 2.0


def windows(*rows: tuple[int, float], classes: int = 3) -> tuple[np.ndarray, list]:
    """Back-to-back windows of LENGTH s: (top class, its probability) each, the rest spread."""
    probabilities = np.zeros((len(rows), classes))
    for i, (label, score) in enumerate(rows):
        probabilities[i] = (1 - score) / (classes - 1)
        probabilities[i, label] = score
    times = [(i * LENGTH, (i + 1) * LENGTH) for i in range(len(rows))]
    return probabilities, times


def spans(probabilities, times, rule, cuts=()) -> list[tuple[int, float, float, int]]:
    found = find_segments(probabilities, times, rule, cuts)
    return [(s.index, s.start_s, s.end_s, s.windows) for s in found]


def test_raw_rule_merges_agreeing_windows_and_splits_on_unsure_ones() -> None:
    probabilities, times = windows((0, 0.9), (0, 0.7), (1, 0.8), (1, 0.4), (1, 0.9), (0, 0.6))
    assert spans(probabilities, times, SegmentRule.raw()) == [
        (0, 0.0, 4.0, 2),
        (1, 4.0, 6.0, 1),
        (1, 8.0, 10.0, 1),
        (0, 10.0, 12.0, 1),
    ]
    (first, *_) = find_segments(probabilities, times, SegmentRule.raw())
    assert first.score == pytest.approx(0.8)
    assert spans(probabilities, times, SegmentRule.raw(min_score=0.0))[1][3] == 3


def test_one_flickering_window_does_not_break_an_action() -> None:
    # Ten windows of class 0 with one window of class 1 and one unsure window among them.
    rows = [(0, 0.9)] * 3 + [(1, 0.6)] + [(0, 0.9)] * 2 + [(0, 0.4)] + [(0, 0.9)] * 3
    probabilities, times = windows(*rows)
    assert len(spans(probabilities, times, SegmentRule.raw())) == 4
    assert spans(probabilities, times, SegmentRule()) == [(0, 0.0, 20.0, 10)]


def test_gap_tolerance_and_minimum_duration_are_parameters() -> None:
    # Two runs of class 0 with 4 s of class 2 between them.
    rows = [(0, 0.9)] * 3 + [(2, 0.9)] * 2 + [(0, 0.9)] * 3
    probabilities, times = windows(*rows)
    plain = SegmentRule(smooth=1, cut_weight=1.0)
    assert [s[0] for s in spans(probabilities, times, plain)] == [0, 2, 0]
    dropped = plain.model_copy(update={"min_duration_s": 5.0, "gap_s": 4.0})
    assert spans(probabilities, times, dropped) == [(0, 0.0, 16.0, 6)]
    too_short_a_gap = plain.model_copy(update={"min_duration_s": 5.0, "gap_s": 3.0})
    assert [s[0] for s in spans(probabilities, times, too_short_a_gap)] == [0, 0]


def test_windows_across_a_shot_change_count_less() -> None:
    # A window straddling a cut scores another class confidently; with the cut known it is
    # outweighed by its neighbours when smoothing.
    rows = [(0, 0.7), (1, 0.95), (0, 0.7), (0, 0.7)]
    probabilities, times = windows(*rows)
    rule = SegmentRule(smooth=3, gap_s=0.0, min_duration_s=0.0)
    assert [s[0] for s in spans(probabilities, times, rule)] == [1, 0]
    cut_inside_window_1 = [3.0]
    assert spans(probabilities, times, rule, cut_inside_window_1) == [(0, 0.0, 8.0, 4)]


def test_a_short_video_keeps_its_segment() -> None:
    probabilities, times = windows((0, 0.9))
    assert spans(probabilities, times, SegmentRule()) == [(0, 0.0, 2.0, 1)]
    assert find_segments(np.zeros((0, 3)), [], SegmentRule()) == []
