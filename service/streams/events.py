"""Hysteresis: a stream's window probabilities in, action start and end events out.

An action starts when its probability is at least `high` in `windows` consecutive windows and
ends at its first window below `low` (`low` <= `high`, so a score wavering around one threshold
does not flicker). The start is dated by the first of those windows, the end by the last window
still at or above `low`; the end event carries the peak score.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from service.streams.schemas import EventRule, EventType, StreamEvent


@dataclass(frozen=True)
class WindowTimes:
    """Where a window lies: stream seconds, and wall-clock seconds (time.time()) when its
    first and last frames arrived."""

    start_s: float
    end_s: float
    start_wall: float
    end_wall: float


@dataclass
class _Track:
    streak: int = 0
    first: WindowTimes | None = None  # the streak's first window
    streak_peak: float = 0.0
    action_id: str | None = None  # set while the action is on
    peak: float = 0.0
    last_on: WindowTimes | None = None  # the last window at or above low


@dataclass
class EventDetector:
    stream: str
    labels: tuple[str, ...]
    rule: EventRule
    _tracks: dict[int, _Track] = field(default_factory=dict)
    _watched: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        wanted = set(self.rule.labels) if self.rule.labels else set(self.labels)
        self._watched = np.array([label in wanted for label in self.labels])

    @property
    def active(self) -> list[str]:
        return [self.labels[i] for i, t in self._tracks.items() if t.action_id is not None]

    def feed(self, probabilities: np.ndarray, times: WindowTimes) -> list[StreamEvent]:
        """One window's class probabilities (K,) → the events it causes."""
        events = []
        rule = self.rule
        candidates = set(np.flatnonzero(self._watched & (probabilities >= rule.low)).tolist())
        for index in sorted(candidates | set(self._tracks)):
            p = float(probabilities[index])
            track = self._tracks.setdefault(index, _Track())
            if track.action_id is not None:  # on: does it hold?
                if p >= rule.low:
                    track.peak = max(track.peak, p)
                    track.last_on = times
                else:
                    events.append(self._end(index, track, "below_low"))
            if track.action_id is None:  # off (or just ended): does it start?
                if p >= rule.high:
                    if track.streak == 0:
                        track.first, track.streak_peak = times, 0.0
                    track.streak += 1
                    track.streak_peak = max(track.streak_peak, p)
                    if track.streak >= rule.windows:
                        events.append(self._start(index, track, p, times))
                else:
                    track.streak = 0
            if track.action_id is None and track.streak == 0:
                del self._tracks[index]
        return events

    def close(self, reason: str) -> list[StreamEvent]:
        """End every action that is on (the stream stopped or lost its source)."""
        events = [
            self._end(index, track, reason)
            for index, track in list(self._tracks.items())
            if track.action_id is not None
        ]
        self._tracks.clear()
        return events

    def _start(self, index: int, track: _Track, p: float, times: WindowTimes) -> StreamEvent:
        assert track.first is not None
        track.action_id = uuid.uuid4().hex[:16]
        track.peak, track.last_on, track.streak = track.streak_peak, times, 0
        return StreamEvent(
            id=uuid.uuid4().hex[:16],
            action_id=track.action_id,
            type=EventType.START,
            stream=self.stream,
            label=self.labels[index],
            score=p,
            peak_score=track.peak,
            start_stream_s=track.first.start_s,
            start_time=_utc(track.first.start_wall),
            emitted_at=datetime.now(UTC),
        )

    def _end(self, index: int, track: _Track, reason: str) -> StreamEvent:
        assert track.first is not None and track.last_on is not None and track.action_id
        event = StreamEvent(
            id=uuid.uuid4().hex[:16],
            action_id=track.action_id,
            type=EventType.END,
            stream=self.stream,
            label=self.labels[index],
            score=track.peak,
            peak_score=track.peak,
            start_stream_s=track.first.start_s,
            end_stream_s=track.last_on.end_s,
            start_time=_utc(track.first.start_wall),
            end_time=_utc(track.last_on.end_wall),
            emitted_at=datetime.now(UTC),
            reason=reason,
        )
        track.action_id, track.streak, track.first = None, 0, None
        return event


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
