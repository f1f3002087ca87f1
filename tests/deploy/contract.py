"""What the deployment files must agree with, read from the service itself: its settings
(every `ACTSERVE_<FIELD>` variable), its routes, the series its /metrics can show and how long
it may take to stop."""

from __future__ import annotations

import importlib.util
import inspect
import re
from functools import cache
from pathlib import Path
from types import ModuleType

from prometheus_client import CollectorRegistry
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from pydantic import ValidationError

from service.app import create_app
from service.jobs.metrics import JobMetrics, QueueCollector
from service.metrics import ServiceMetrics
from service.settings import Settings
from service.streams.delivery import StreamMetrics
from service.video import DecodePool

ROOT = Path(__file__).resolve().parents[2]
ENV_PREFIX = "ACTSERVE_"
ENV_NAME = re.compile(r"\bACTSERVE_[A-Z0-9_]+\b")

#: The series a metric family of each type shows (`_created` series are disabled).
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}
#: The HTTP guards (service/server.py) every image sets explicitly, so operators see them.
HTTP_GUARDS = (
    "ACTSERVE_LIMIT_CONCURRENCY",
    "ACTSERVE_KEEP_ALIVE_S",
    "ACTSERVE_HEADER_TIMEOUT_S",
    "ACTSERVE_BODY_IDLE_TIMEOUT_S",
)
#: Seconds between the end of the HTTP drain and the process's exit, beyond the decode
#: pool's stop grace: batchers and runtimes closing, the interpreter exiting.
EXIT_MARGIN_S = 5.0


def setting_env_names() -> set[str]:
    return Settings.env_names()


def check_settings(env: dict[str, str]) -> Settings:
    """The Settings an environment gives the service: unknown ACTSERVE_ names and invalid
    values fail with the variable named."""
    unknown = sorted(name for name in env if name not in setting_env_names())
    assert not unknown, f"not service settings: {unknown}; known: {sorted(setting_env_names())}"
    values = {name.removeprefix(ENV_PREFIX).lower(): value for name, value in env.items()}
    try:
        return Settings(**values)
    except ValidationError as error:
        raise AssertionError(f"invalid ACTSERVE_ values {env}: {error}") from None


@cache
def routes() -> frozenset[str]:
    """Every path the service documents, the admin API included (mounted when a token is set)."""
    app = create_app(Settings(admin_token="x"))
    return frozenset(app.openapi()["paths"])


@cache
def exposed_series() -> dict[str, frozenset[str]]:
    """Every series name /metrics can show, with its label names. Derived from the collectors
    rather than a scrape: a labelled metric shows no sample until it is first observed."""
    metrics, *others = _metrics()
    series: dict[str, frozenset[str]] = {}
    families = set()
    for collector in [c for group in (metrics, *others) for c in vars(group).values()]:
        if isinstance(collector, QueueCollector):  # the jobs' gauges, read at each scrape
            for family in collector.describe():
                families.add(family.name)
                series[family.name] = frozenset(QUEUE_LABELS.get(family.name, ()))
            continue
        if not isinstance(collector, MetricWrapperBase):
            continue
        labels = frozenset(collector._labelnames)
        for family in collector.describe():
            families.add(family.name)
            for suffix in SUFFIXES[family.type]:
                extra = {"le"} if suffix == "_bucket" else set()
                series[family.name + suffix] = labels | extra
    # The process, platform and GC collectors prometheus_client ships: their own samples.
    standard = CollectorRegistry()
    for make in (ProcessCollector, PlatformCollector, GCCollector):
        make(registry=standard)
    for family in standard.collect():
        families.add(family.name)
        for sample in family.samples:
            series[sample.name] = series.get(sample.name, frozenset()) | frozenset(sample.labels)
    registered = {family.name for family in metrics.registry.collect()}
    assert families == registered, f"collectors not reached: {registered ^ families}"
    return series


#: The label names of the jobs' queue gauges (custom families carry no label names).
QUEUE_LABELS = {"actserve_jobs": ("state",)}


def _metrics() -> tuple[ServiceMetrics, JobMetrics, StreamMetrics]:
    """The service's metrics, the jobs' and the streams' (which the app adds to the same
    registry)."""
    metrics = ServiceMetrics()
    return metrics, JobMetrics(metrics.registry), StreamMetrics(metrics.registry)


def metric_families() -> dict[str, str]:
    """Family name → type, as the `# TYPE` lines of /metrics give them."""
    return {
        family.name: family.type
        for family in _metrics()[0].registry.collect()
        if family.name.startswith("actserve_")
    }


def drain_budget_s(
    drain_timeout_s: float, pre_stop_s: float = 0.0, drain_grace_s: float = 0.0
) -> float:
    """The least grace period (SIGTERM → SIGKILL) that lets a drain run to its end: the
    pre-stop pause, the drain's grace (readiness 503, listener open), uvicorn's graceful
    timeout, then the decode pool's stop grace."""
    pool_grace = inspect.signature(DecodePool.close).parameters["grace_s"].default
    return pre_stop_s + drain_grace_s + drain_timeout_s + pool_grace + EXIT_MARGIN_S


def default_drain_timeout_s() -> float:
    return Settings.model_fields["drain_timeout_s"].default


def parse_duration_s(text: str | int | float) -> float:
    """Compose/Prometheus durations ('40s', '1m30s', '250ms') or plain seconds."""
    if isinstance(text, int | float):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


@cache
def load_healthcheck() -> ModuleType:
    """docker/healthcheck.py (a script in the images, not a package module)."""
    path = ROOT / "docker" / "healthcheck.py"
    spec = importlib.util.spec_from_file_location("actserve_healthcheck", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
