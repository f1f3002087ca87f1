"""The images' entrypoint and health check, run here as the container runs them: `actserve
serve` configured only by ACTSERVE_* variables, with torch, the backbones, the exporters and
onnx made unimportable (the CPU image has none of them), stopped with SIGTERM mid-request."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import httpx
import pytest
from packaging.utils import canonicalize_name

from tests.deploy.contract import ROOT, exposed_series, load_healthcheck, metric_families
from tests.deploy.images import lock
from tests.service.conftest import LABELS
from tests.service.video.conftest import MediaLibrary

#: What the CPU image lacks, made unimportable in the server and its decode workers.
ABSENT = ("torch", "torchvision", "backbones", "exporters", "onnx", "onnxscript")
DRAIN_TIMEOUT_S = 20
#: A lone request's views wait this long for batch-mates: long enough to be in flight at SIGTERM.
MAX_DELAY_MS = 1500
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \| (\s*)([\w.]+)$")

SITECUSTOMIZE = f"""\
import sys
for name in {ABSENT!r}:
    sys.modules[name] = None  # `import name` now raises ModuleNotFoundError
"""


# --------------------------------------------------------------------------- the health check


@pytest.mark.parametrize(
    ("environ", "url"),
    [
        # the image's settings: every interface → loopback
        ({"ACTSERVE_HOST": "0.0.0.0", "ACTSERVE_PORT": "8000"}, "http://127.0.0.1:8000/healthz"),
        ({"ACTSERVE_HOST": "::", "ACTSERVE_PORT": "9000"}, "http://127.0.0.1:9000/healthz"),
        # the service's own defaults
        ({}, "http://127.0.0.1:8000/healthz"),
        # a specific address is checked where the server listens
        ({"ACTSERVE_HOST": "10.1.2.3"}, "http://10.1.2.3:8000/healthz"),
        ({"ACTSERVE_HOST": "fd00::1", "ACTSERVE_PORT": "81"}, "http://[fd00::1]:81/healthz"),
    ],
)
def test_healthcheck_follows_the_server_settings(environ: dict[str, str], url: str) -> None:
    assert load_healthcheck().health_url(environ) == url


def run_healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = ROOT / "docker" / "healthcheck.py"
    return subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=30
    )


# --------------------------------------------------------------------------- one server's life


@dataclass
class Served:
    """What happened to one `actserve serve` process, start to SIGTERM."""

    unhealthy_before_start: subprocess.CompletedProcess[str]
    healthy: subprocess.CompletedProcess[str]
    ready: httpx.Response
    classified: httpx.Response
    unknown_model: httpx.Response
    metrics: str
    in_flight: httpx.Response | None = None
    refused_while_draining: bool = False
    exit_code: int | None = None
    exit_seconds: float = 0.0
    imported: set[str] = field(default_factory=set)
    log: str = ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def queue_depth(client: httpx.Client) -> float:
    text = client.get("/metrics").text
    values = re.findall(r"^actserve_queue_depth_views\{[^}]*\} (\S+)$", text, re.M)
    return sum(float(v) for v in values)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def imported_modules(stderr: str) -> set[str]:
    """Top-level modules from `-X importtime` lines (the server and its spawned workers)."""
    found = set()
    for line in stderr.splitlines():
        match = IMPORT_LINE.match(line)
        if match:
            found.add(match.group(2).split(".")[0])
    return found


@pytest.fixture(scope="module")
def served(
    store_root: Path, videos: MediaLibrary, tmp_path_factory: pytest.TempPathFactory
) -> Served:
    site = tmp_path_factory.mktemp("site")
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ACTSERVE_")},
        "PYTHONPATH": str(site),
        "PYTHONPROFILEIMPORTTIME": "1",
        "ACTSERVE_HOST": "127.0.0.1",
        "ACTSERVE_PORT": str(port),
        "ACTSERVE_STORE": str(store_root),
        "ACTSERVE_DEVICE": "cpu",
        "ACTSERVE_DECODE_WORKERS": "1",
        "ACTSERVE_MAX_DELAY_MS": str(MAX_DELAY_MS),
        "ACTSERVE_DELAY_WHEN_IDLE": "true",  # a lone request waits in the queue, to be drained
        "ACTSERVE_DRAIN_TIMEOUT_S": str(DRAIN_TIMEOUT_S),
    }
    unhealthy = run_healthcheck(env)
    log_path = tmp_path_factory.mktemp("log") / "stderr.txt"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "actserve", "serve"], env=env, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 120
        while (healthy := run_healthcheck(env)).returncode != 0:
            assert server.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.3)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        video = videos["h264.mp4"]

        def classify() -> httpx.Response:
            with video.open("rb") as f:
                return client.post("/classify", files={"video": (video.name, f, "video/mp4")})

        served = Served(
            unhealthy_before_start=unhealthy,
            healthy=healthy,
            ready=client.get("/readyz"),
            classified=classify(),
            unknown_model=client.get("/models/no-such-model"),
            metrics=client.get("/metrics").text,
        )
        # SIGTERM while a request waits in the batch queue.
        responses: list[httpx.Response] = []
        request = threading.Thread(target=lambda: responses.append(classify()))
        request.start()
        wait_until(lambda: queue_depth(client) > 0, 30, "the request to be queued")
        server.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        served.refused_while_draining = refused(port, request)
        request.join(timeout=DRAIN_TIMEOUT_S + 30)
        served.in_flight = responses[0] if responses else None
        served.exit_code = server.wait(timeout=DRAIN_TIMEOUT_S + 30)
        served.exit_seconds = time.monotonic() - stopped_at
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    served.log = log_path.read_text()
    served.imported = imported_modules(served.log)
    return served


def refused(port: int, request: threading.Thread) -> bool:
    """Whether new connections are refused while the queued request is still in flight."""
    while request.is_alive():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return request.is_alive()
        time.sleep(0.05)
    return False


# --------------------------------------------------------------------------- what it showed


@pytest.mark.slow
def test_healthcheck_fails_until_the_server_listens(served: Served) -> None:
    assert served.unhealthy_before_start.returncode == 1
    assert "unhealthy" in served.unhealthy_before_start.stderr
    assert served.healthy.returncode == 0, served.healthy.stderr


@pytest.mark.slow
def test_entrypoint_serves_onnx_without_torch(served: Served) -> None:
    assert served.ready.status_code == 200, served.ready.text
    assert served.classified.status_code == 200, served.classified.text
    body = served.classified.json()
    assert body["model"] == "tiny" and body["top_k"][0]["label"] in LABELS
    assert served.unknown_model.status_code == 404


@pytest.mark.slow
def test_metrics_endpoint_shows_every_family(served: Served) -> None:
    """The names the dashboards and the autoscaler are checked against are the live ones."""
    shown = dict(re.findall(r"^# TYPE (\S+) (\S+)$", served.metrics, re.M))
    # The text format names a counter's family by its sample, `<name>_total`.
    expected = {
        name + ("_total" if kind == "counter" else ""): kind
        for name, kind in metric_families().items()
    }
    assert expected.items() <= shown.items()
    samples = {line.split("{")[0].split(" ")[0] for line in served.metrics.splitlines()}
    assert "actserve_requests_total" in samples and "actserve_rejections_total" in samples
    assert {s for s in samples if s.startswith("actserve_")} <= set(exposed_series())


@pytest.mark.slow
def test_sigterm_drains_the_request_in_flight(served: Served) -> None:
    assert served.in_flight is not None, served.log[-3000:]
    assert served.in_flight.status_code == 200, served.in_flight.text
    assert served.refused_while_draining, "new connections must be refused while draining"
    # uvicorn re-raises the SIGTERM it handled once the drain is over.
    assert served.exit_code in (0, -signal.SIGTERM), served.log[-3000:]
    assert served.exit_seconds < DRAIN_TIMEOUT_S


@pytest.mark.slow
def test_serving_imports_only_what_the_image_locks_install(served: Served) -> None:
    """Every distribution the server and its workers imported is pinned in both image locks:
    a new import in the serving path without a lock entry fails here, not in production."""
    stdlib = set(sys.stdlib_module_names) | {"sitecustomize", "__main__"}
    owners = metadata.packages_distributions()
    ours = {"actserve", "service", "model_store", "window_index"}
    # Decoders httpx uses when they happen to be installed (the dev environment has them).
    optional = {"brotli", "_brotli", "brotlicffi", "zstandard"}
    startup = imported_modules(
        subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "pass"], capture_output=True, text=True
        ).stderr
    )
    unplaced, distributions = [], set()
    for module in served.imported - stdlib - ours - startup - optional:
        if module.startswith("_") and module.lstrip("_") in stdlib | ours:
            continue
        if importlib.util.find_spec(module) is None:
            continue  # an optional import that failed (uvicorn tries uvloop, httptools, ...)
        names = owners.get(module)
        if not names:
            unplaced.append(module)
            continue
        distributions |= {canonicalize_name(n) for n in names}
    assert not unplaced, f"imported modules of no known distribution: {sorted(unplaced)}"
    flavours = {"onnxruntime", "onnxruntime-gpu"}
    for variant in ("cpu", "cuda"):
        pinned = set(lock(variant))
        missing = {d for d in distributions - pinned if not (d in flavours and pinned & flavours)}
        # The otel extra (tracing to a collector) is optional: the images leave it out, and the
        # service imports it only where it is installed (as the dev environment has it).
        missing = {d for d in missing if not d.startswith("opentelemetry-")}
        assert not missing, f"{variant}.txt lacks what the server imports: {sorted(missing)}"
