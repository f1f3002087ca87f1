"""Prometheus metrics (prefix `actserve_`, seconds, histograms so percentiles aggregate across
replicas). Each app owns its registry; label values come from the store (model, version),
HTTP status codes and a fixed set of rejection reasons, never from request content."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from service.batching import BatchObserver
from service.errors import STATUS, all_codes
from service.schemas import StreamTimings, Timings

if TYPE_CHECKING:
    from service.engine import Admission
    from service.video import DecodePool

# The `_created` timestamp series double every counter's output and no dashboard reads them.
disable_created_metrics()

#: A batch on a GPU runs in a millisecond or two: the inference histogram resolves those too.
INFERENCE_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25,
                     0.5, 1, 2.5, 5, 10)  # fmt: skip
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
VIEW_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256)
MODEL = ("model", "version")
#: Labels of a request that failed before a model was chosen (bad parameters, unknown model).
NO_MODEL = ("-", "-")
#: Every status a video request can end with, created at 0 for each served version so that
#: `rate()` sees the first burst.
STATUSES = tuple(sorted({200, 400, 499, 500, *STATUS.values()}))
#: The endpoints that take videos, the `endpoint` label of `actserve_requests_total`.
ENDPOINTS = ("/classify", "/embed", "/similarity")


@dataclass(frozen=True)
class StreamTiming:
    """Where one stream (rgb or flow) of a two-stream video spent its time, seconds."""

    modality: str
    queue_s: float
    inference_s: float
    flow_s: float | None = None  # the flow stream's optical flow, in the worker


@dataclass(frozen=True)
class RequestStages:
    """Seconds one request (or one of its videos) spent in each stage, and how much work it
    was: what the metrics observe and the response's `timings` show, assembled here only.

    A two-stream video's `streams` hold each stream's share (one stream: none)."""

    upload_s: float = 0.0
    decode_wait_s: float = 0.0
    decode_s: float = 0.0
    queue_s: float = 0.0
    inference_s: float = 0.0
    total_s: float = 0.0
    upload_bytes: int = 0
    views: int = 0
    frames_decoded: int = 0
    streams: tuple[StreamTiming, ...] = ()

    @classmethod
    def merge(cls, parts: Sequence[RequestStages]) -> RequestStages:
        """A request's stages from its videos', which ran side by side: the longest time of
        each stage, the work summed; the streams of a one-video request."""
        return cls(
            upload_s=max(p.upload_s for p in parts),
            decode_wait_s=max(p.decode_wait_s for p in parts),
            decode_s=max(p.decode_s for p in parts),
            queue_s=max(p.queue_s for p in parts),
            inference_s=max(p.inference_s for p in parts),
            total_s=max(p.total_s for p in parts),
            upload_bytes=sum(p.upload_bytes for p in parts),
            views=sum(p.views for p in parts),
            frames_decoded=sum(p.frames_decoded for p in parts),
            streams=parts[0].streams if len(parts) == 1 else (),
        )

    def to_timings(self) -> Timings:
        """The stages in ms, as responses show them (with each stream's share, if two)."""
        streams = {
            s.modality: StreamTimings(
                queue_ms=s.queue_s * 1e3,
                inference_ms=s.inference_s * 1e3,
                flow_ms=s.flow_s * 1e3 if s.flow_s is not None else None,
            )
            for s in self.streams
        }
        return Timings(
            upload_ms=self.upload_s * 1e3,
            decode_wait_ms=self.decode_wait_s * 1e3,
            decode_ms=self.decode_s * 1e3,
            queue_ms=self.queue_s * 1e3,
            inference_ms=self.inference_s * 1e3,
            total_ms=self.total_s * 1e3,
            streams=streams or None,
        )

    def milliseconds(self) -> dict[str, float]:
        """The stages in ms, by name (upload, decode_wait, decode, queue, inference, total)."""
        stages = ("upload", "decode_wait", "decode", "queue", "inference", "total")
        return {stage: round(getattr(self, f"{stage}_s") * 1000, 2) for stage in stages}


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # The process's memory, CPU time, open and maximum file descriptors, start time
        # (process_*), and the interpreter's version and garbage collections (python_*).
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.requests = Counter(
            "actserve_requests",
            "Inference requests (/classify, /embed, /similarity, /v2 infer) by endpoint (the "
            "route's path), model, version and HTTP status.",
            ["endpoint", *MODEL, "status"],
            registry=r,
        )
        self.api_key_requests = Counter(
            "actserve_api_key_requests",
            "Requests to the inference routes by API key name (when API keys are configured).",
            ["key"],
            registry=r,
        )
        self.rejections = Counter(
            "actserve_rejections",
            "Requests refused, by reason (error code).",
            ["reason"],
            registry=r,
        )
        self.upload_seconds = Histogram(
            "actserve_upload_duration_seconds",
            "Receiving the upload into a temporary file.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decode_wait_seconds = Histogram(
            "actserve_decode_wait_duration_seconds",
            "Waiting for a free decode worker (the decode backlog).",
            MODEL,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decode_seconds = Histogram(
            "actserve_decode_duration_seconds",
            "Indexing, sampling and decoding in a worker, and assembling the views.",
            MODEL,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_seconds = Histogram(
            "actserve_queue_duration_seconds",
            "From queuing a request's views to its last view entering a batch.",
            MODEL,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "actserve_inference_duration_seconds",
            "Runtime time per batch.",
            MODEL,
            buckets=INFERENCE_BUCKETS,
            registry=r,
        )
        self.request_seconds = Histogram(
            "actserve_request_duration_seconds",
            "End to end, upload to response.",
            MODEL,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_views = Histogram(
            "actserve_batch_size_views",
            "Views per executed batch.",
            MODEL,
            buckets=VIEW_BUCKETS,
            registry=r,
        )
        self.request_views = Histogram(
            "actserve_request_views",
            "Views per request.",
            MODEL,
            buckets=VIEW_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "actserve_queue_depth_views", "Views waiting for a batch.", MODEL, registry=r
        )
        self.requests_in_flight = Gauge(
            "actserve_requests_in_flight",
            "Requests being served: uploading, waiting for or in decoding, or in inference.",
            registry=r,
        )
        self.uploads_in_progress = Gauge(
            "actserve_uploads_in_progress", "Uploads being received.", registry=r
        )
        self.decode_backlog = Gauge(
            "actserve_decode_backlog_requests",
            "Requests waiting for a decode worker or decoding (the scaling signal on CPU).",
            registry=r,
        )
        self.decode_workers = Gauge(
            "actserve_decode_workers", "Decode worker processes.", registry=r
        )
        self.inference_items = Counter(
            "actserve_inference_items",
            "Views run (Triton's inference count).",
            MODEL,
            registry=r,
        )
        self.inference_executions = Counter(
            "actserve_inference_executions",
            "Batches run; items / executions = mean batch size (Triton's exec count).",
            MODEL,
            registry=r,
        )
        self.decoded_frames = Counter(
            "actserve_decoded_frames", "Video frames decoded.", registry=r
        )
        self.upload_bytes = Counter("actserve_upload_bytes", "Upload bytes received.", registry=r)
        self.model_broken = Gauge(
            "actserve_model_broken",
            "1 for each routed model version that failed to load (and is refused).",
            MODEL,
            registry=r,
        )
        self.model_loaded = Gauge(
            "actserve_model_loaded",
            "1 for each loaded model version (info gauge).",
            [*MODEL, "backbone", "runtime"],
            registry=r,
        )
        self.model_load_seconds = Gauge(
            "actserve_model_load_seconds",
            "Load, verification and warm-up time of a version.",
            MODEL,
            registry=r,
        )

        for reason in all_codes():
            self.rejections.labels(reason)
        self.track_version(*NO_MODEL)

    def watch(self, pool: DecodePool, admission: Admission) -> None:
        """Read the decode backlog and the uploads in progress at each scrape."""
        self.decode_backlog.set_function(lambda: pool.backlog)
        self.decode_workers.set_function(lambda: pool.workers)
        self.uploads_in_progress.set_function(lambda: admission.uploads)

    def track_version(self, model: str, version: int | str) -> None:
        """Create a served version's request counters at 0, one per endpoint and status."""
        for endpoint in ENDPOINTS:
            for status in STATUSES:
                self.requests.labels(endpoint, model, str(version), str(status))

    def count_request(self, endpoint: str, labels: tuple[str, str], status: int) -> None:
        self.requests.labels(endpoint, *labels, str(status)).inc()

    def observe_request(self, labels: tuple[str, str], stages: RequestStages) -> None:
        """Everything a served request tells the metrics, in one call."""
        self.upload_seconds.observe(stages.upload_s)
        self.upload_bytes.inc(stages.upload_bytes)
        self.decode_wait_seconds.labels(*labels).observe(stages.decode_wait_s)
        self.decode_seconds.labels(*labels).observe(stages.decode_s)
        self.decoded_frames.inc(stages.frames_decoded)
        self.observe_inference(
            labels, queue_s=stages.queue_s, total_s=stages.total_s, views=stages.views
        )

    def observe_inference(
        self, labels: tuple[str, str], *, queue_s: float, total_s: float, views: int
    ) -> None:
        """What every served request tells the metrics, videos or tensors (the Open Inference
        Protocol's requests have no upload or decode stage)."""
        self.queue_seconds.labels(*labels).observe(queue_s)
        self.request_seconds.labels(*labels).observe(total_s)
        self.request_views.labels(*labels).observe(views)

    def batch_observer(self, model: str, version: int) -> BatchObserver:
        labels = (model, str(version))

        def on_batch(views: int, seconds: float) -> None:
            self.batch_views.labels(*labels).observe(views)
            self.inference_seconds.labels(*labels).observe(seconds)
            self.inference_items.labels(*labels).inc(views)
            self.inference_executions.labels(*labels).inc()

        return BatchObserver(on_batch=on_batch, on_queue_depth=self.queue_depth.labels(*labels).set)

    def batch_observers(self, model: str, version: int, streams: int) -> list[BatchObserver]:
        """One observer per batcher of a version: a two-stream version's rgb and flow
        batchers count into the same series, and its queue depth is their sum."""
        if streams == 1:
            return [self.batch_observer(model, version)]
        shared = self.batch_observer(model, version)
        depths = [0] * streams

        def depth_of(stream: int):
            def on_queue_depth(views: int) -> None:
                depths[stream] = views
                shared.on_queue_depth(sum(depths))

            return on_queue_depth

        return [
            BatchObserver(on_batch=shared.on_batch, on_queue_depth=depth_of(s))
            for s in range(streams)
        ]

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return self.exposition(None)[0]

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition and its content type: OpenMetrics when `accept` (the scraper's
        Accept header) asks for it, else Prometheus text."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
