"""Job metrics, in the app's registry: jobs by state and the age of the oldest queued job
(read from the shared database when scraped, so every replica reports the whole queue; take
`max` across replicas), and what this process ran: job durations, windows and video seconds."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.jobs.queue import Job, JobQueue, JobState

logger = logging.getLogger("actserve.jobs")

JOB_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)


class QueueCollector(Collector):
    """The queue's gauges, read from the database at each scrape (without a queue: the
    families alone, as `describe` gives them)."""

    def __init__(self, queue: JobQueue | None) -> None:
        self.queue = queue

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        if self.queue is None:
            yield from self._families()
            return
        try:
            counts = self.queue.counts()
            oldest = self.queue.oldest_queued_at()
        except Exception:  # the database is away: no sample rather than a failed scrape
            logger.exception("reading the jobs queue for /metrics failed")
            return
        jobs, age = self._families()
        for state, count in counts.items():
            jobs.add_metric([str(state)], count)
        age.add_metric([], max(0.0, time.time() - oldest) if oldest is not None else 0.0)
        yield jobs
        yield age

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "actserve_jobs", "Jobs in the shared queue by state.", labels=["state"]
            ),
            GaugeMetricFamily(
                "actserve_jobs_queue_age_seconds",
                "Age of the oldest queued job (0 when none waits).",
                labels=[],
            ),
        )


class JobMetrics:
    def __init__(self, registry: CollectorRegistry, queue: JobQueue | None = None) -> None:
        self.queue = QueueCollector(queue)
        registry.register(self.queue)
        self.duration = Histogram(
            "actserve_job_duration_seconds",
            "From a job's first start to its end, by final state (jobs finished here).",
            ["state"],
            buckets=JOB_BUCKETS,
            registry=registry,
        )
        self.windows = Counter(
            "actserve_job_windows",
            "Windows classified by jobs in this process (rate: windows/s).",
            registry=registry,
        )
        self.video_seconds = Counter(
            "actserve_job_video_seconds",
            "Seconds of video covered by the windows jobs classified here.",
            registry=registry,
        )
        self.chunk_seconds = Histogram(
            "actserve_job_chunk_duration_seconds",
            "Decoding and classifying one chunk of a job's windows.",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=registry,
        )
        for state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED):
            self.duration.labels(str(state))

    def chunk_done(self, windows: int, video_seconds: float, seconds: float) -> None:
        self.windows.inc(windows)
        self.video_seconds.inc(max(0.0, video_seconds))
        self.chunk_seconds.observe(seconds)

    def finished(self, job: Job) -> None:
        if job.started_at is not None and job.finished_at is not None:
            self.duration.labels(str(job.state)).observe(job.finished_at - job.started_at)
