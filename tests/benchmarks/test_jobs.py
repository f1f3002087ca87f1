"""benchmarks/jobs.py, shrunk: it runs, and reports both variants and the job's rate."""

from __future__ import annotations

from benchmarks import jobs


def test_the_jobs_benchmark_runs(store_root, videos, capsys) -> None:
    results = jobs.main(
        [
            "--store", str(store_root), "--short", str(videos["h264.mp4"]), "--minutes", "0.25",
            "--size", "64x48", "--concurrency", "2", "--requests", "4", "--rounds", "1",
            "--alone-s", "1",
        ]
    )  # fmt: skip
    assert results["p99 busy ÷ quiet"] > 0
    assert results["job video-s per wall-s alone"] > 0
    assert "| job windows/s busy |" in capsys.readouterr().out
