"""Hysteresis (service/streams/events.py) and the ring buffer (service/streams/windows.py)."""

from __future__ import annotations

import numpy as np
import pytest

from model_store import Recipe
from service.streams.events import EventDetector, WindowTimes
from service.streams.schemas import EventRule, EventType
from service.streams.windows import Frame, Normaliser, RingBuffer

LABELS = ("wave", "clap", "run")


def run(detector: EventDetector, scores: list[tuple[float, float, float]]):
    events = []
    for i, p in enumerate(scores):
        times = WindowTimes(i * 0.5, i * 0.5 + 1.0, 1000 + i * 0.5, 1001 + i * 0.5)
        events += [(i, e) for e in detector.feed(np.array(p), times)]
    return events


def test_an_action_starts_after_k_windows_above_high_and_ends_below_low() -> None:
    detector = EventDetector("s", LABELS, EventRule(high=0.6, low=0.4, windows=2))
    events = run(
        detector,
        [
            (0.7, 0.2, 0.1),
            (0.3, 0.6, 0.1),
            (0.2, 0.7, 0.1),
            (0.1, 0.9, 0.0),
            (0.5, 0.45, 0.05),
            (0.61, 0.39, 0.0),
            (0.2, 0.1, 0.7),
        ],
    )
    assert [(i, e.type, e.label) for i, e in events] == [
        (2, EventType.START, "clap"),  # one window of wave was not enough; clap held 2
        (5, EventType.END, "clap"),  # 0.45 held above low; 0.39 ended it
    ]
    start, end = events[0][1], events[1][1]
    assert start.start_stream_s == 0.5 and start.score == 0.7  # dated by the streak's first
    assert end.action_id == start.action_id and end.peak_score == 0.9
    assert end.end_stream_s == 3.0  # the end of the last window at or above low
    assert end.reason == "below_low" and end.end_time is not None


def test_only_the_rules_labels_raise_events_and_close_ends_what_is_on() -> None:
    detector = EventDetector("s", LABELS, EventRule(high=0.5, low=0.5, windows=1, labels=["run"]))
    events = run(detector, [(0.9, 0.0, 0.1), (0.2, 0.0, 0.8)])
    assert [(e.type, e.label) for _, e in events] == [(EventType.START, "run")]
    assert detector.active == ["run"]
    (ended,) = detector.close("disconnected")
    assert ended.reason == "disconnected" and detector.active == []


def test_the_rule_orders_its_thresholds() -> None:
    with pytest.raises(ValueError, match="must not exceed"):
        EventRule(high=0.4, low=0.6)


def frame(t: float) -> Frame:
    return Frame(t, 1000 + t, np.full((2, 2, 3), int(t * 10) % 256, np.uint8))


def test_windows_are_the_last_clip_len_frames_every_stride() -> None:
    ring = RingBuffer(clip_len=4, stride_s=0.5)
    ring.reset(period_s=0.25)
    due = [t for t in np.arange(0, 3, 0.25) if ring.push(frame(float(t)))]
    assert due == [0.75, 1.25, 1.75, 2.25, 2.75]
    assert ring.push(frame(3.0)) is None
    window = ring.push(frame(3.25))
    assert window is not None and [f.time_s for f in window.frames] == [2.5, 2.75, 3.0, 3.25]


def test_a_gap_empties_the_buffer() -> None:
    ring = RingBuffer(clip_len=3, stride_s=0.1)
    ring.reset(period_s=0.25)
    for t in (0.0, 0.25):
        assert ring.push(frame(t)) is None
    assert ring.push(frame(2.0)) is None  # a jump: the window would span it
    assert ring.push(frame(2.25)) is None
    assert ring.push(frame(2.5)) is not None


def test_views_are_normalised_as_the_recipe_says() -> None:
    recipe = Recipe(
        clip_len=2,
        frame_interval=1,
        num_clips=1,
        num_crops=1,
        short_side=16,
        crop_size=16,
        pixel_scale=1.0,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    )
    ring = RingBuffer(clip_len=2, stride_s=0.1)
    ring.push(frame(0.0))
    window = ring.push(frame(0.1))
    view = Normaliser(recipe)(window)
    assert view.shape == (1, 3, 2, 2, 2) and view.dtype == np.float32
    assert view[0, 0, 0, 0, 0] == pytest.approx(-2.0)  # (0 / 255 - 0.5) / 0.25
    assert view[0, 2, 1, 1, 1] == pytest.approx((1 / 255 - 0.5) / 0.25)
