"""benchmarks/streams.py, shrunk: the demo model on one MPEG-TS-over-HTTP stream (the RTSP
source needs Debian's packages, which only the benchmark installs), and how it matches events
to the video's onsets."""

from __future__ import annotations

import pytest

from benchmarks import streams


def test_each_onset_counts_its_first_start_only() -> None:
    started = 1000.0
    onset = started + streams.ONSET_S
    later = onset + streams.LOOP_S
    arrivals = [
        (onset + 1.9, onset + 1.9, onset + 0.2),
        (onset + 3.0, onset + 3.0, onset + 1.1),  # a flicker within the same action
        (later + 2.1, later + 2.1, later + 0.3),
    ]
    assert streams.latencies(arrivals, started, since=started) == [
        pytest.approx((1.9, 0.2)),
        pytest.approx((2.1, 0.3)),
    ]
    # An onset before the measurement began is not counted, whenever its event came.
    assert streams.latencies(arrivals, started, since=onset + 0.1) == [pytest.approx((2.1, 0.3))]


def test_the_streams_benchmark_runs(capsys) -> None:
    results = streams.main(
        ["--source", "http", "--size", "160x120", "--counts", "1", "--warmup", "1",
         "--seconds", "4"]
    )  # fmt: skip
    (row,) = results
    assert row["streams"] == 1 and row["stride_s"] == 0.5 and row["rule_windows"] == 2
    assert row["windows"] > 0
    assert row["cpu_per_stream"] > 0
    assert '"most_streams_held"' in capsys.readouterr().out
