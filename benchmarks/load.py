"""The service under load against LitServe and against its own limits, in one run.

    python benchmarks/load.py                          # the bundled demo model, a demo video
    python benchmarks/load.py --concurrency 1,8,32 --requests 200 --rounds 2
    python benchmarks/load.py --store S --model M --video clip.mp4 --set runtime_threads=1

Four things measured on the same model artifact and the same video, side by side:

- **actserve**: `actserve serve` in its own process (`--set KEY=VALUE` passes settings).
- **LitServe**: `benchmarks/litserve_peer.py`, the same ONNX artifact and the same PyAV decode
  (actserve's `decode_video`) in LitServe's workers, tuned for this box (see that file).
  Needs the `bench` extra; skipped with a message when LitServe is not installed.
- **the inference-bound limit** ("bare"): the bare runtime's views/s on this video's views in
  batches of `--max-batch-views` (all cores, nothing else running; as many batches at once as
  the runtime has lanes, OpenVINO's streams), divided by the views of one request. The
  runtime is the one the service uses, configured as the service configures it by default
  (`--runtime`, default `auto`: OpenVINO on x86 CPUs); the LitServe peer keeps ONNX Runtime,
  as its users would.
- **the decode-bound limit**: files/s of a plain PyAV decode of the same file (every frame,
  one decoder thread, no conversion) in `--decode-workers` processes at once.
- **the shared-core ceiling**: on a box where the same cores decode and infer, a request costs
  both its decode (the service's own `decode_video` at the profile, `--decode-workers`
  processes) and its inference: 1 / (1/inference rate + 1/that decode rate) req/s.

The service's own limit is the lower of the first two. All three are measured again at each
concurrency level (shared machines drift): the decode rates right after it, the bare runtime
right before and right after it (the limit is the mean of the two; both are printed).

`--door tensors` takes decoding out of both sides: the clients send the clips the bare runtime
runs (one request's views, FP32) to the service's `/v2/models/{name}/infer` in the Open
Inference Protocol's binary form and ask for the logits back in binary. Only actserve (and its
variants) is driven, LitServe having no such door, and actserve ÷ the bare runtime is what
the serving layer (HTTP, parsing, batching, threads) costs the runtime it serves.

Both servers run at once (idle, each costs nothing measurable); for each concurrency level
every round runs `--requests` requests through each server in alternating order, closed loop
from one asyncio client in this process. Printed: req/s, p50 and p99 latency per server and
level, actserve ÷ LitServe (throughput) and actserve ÷ its own limit, and the service's stage
split from `/metrics`. All ratios come from this one run; absolute figures drift on shared
machines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import av
import httpx
import numpy as np

from model_store import ModelStore
from model_store.spec import TensorNames
from service.runtimes import RuntimeOptions, load_runtime
from service.settings import BUNDLED_STORE
from service.video import DecodeOptions, VideoLimits, decode_video

STAGES = ("upload", "decode_wait", "decode", "queue", "inference", "request")
PEER = Path(__file__).resolve().parent / "litserve_peer.py"


@dataclass
class Server:
    name: str
    url: str
    path: str
    process: subprocess.Popen
    latencies: dict[int, list[float]] = field(default_factory=dict)
    seconds: dict[int, float] = field(default_factory=dict)
    errors: dict[int, int] = field(default_factory=dict)
    #: The first words of each distinct error answer, to say what failed.
    failures: set[str] = field(default_factory=set)
    stages: dict[int, dict[str, float]] = field(default_factory=dict)

    def rate(self, level: int) -> float:
        """Answered requests (200) per second."""
        return (len(self.latencies[level]) - self.errors[level]) / self.seconds[level]

    def percentile(self, level: int, q: float) -> float:
        return float(np.percentile(self.latencies[level], q)) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=BUNDLED_STORE)
    parser.add_argument("--model", default=None)
    parser.add_argument("--video", type=Path, default=None, help="default: a demo video")
    parser.add_argument("--profile", choices=("fast", "accurate"), default=None)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--requests", type=int, default=150, help="per server, level and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--max-batch-views", type=int, default=32)
    parser.add_argument("--decode-workers", type=int, default=2)
    parser.add_argument("--servers", default="actserve,litserve")
    parser.add_argument(
        "--door",
        choices=("classify", "tensors"),
        default="classify",
        help="classify: videos to /classify (decode included); tensors: the bare runtime's "
        "clips to /v2/models/{name}/infer, binary (decode out of both sides)",
    )
    parser.add_argument(
        "--runtime",
        default="auto",
        choices=("auto", "onnxruntime", "openvino", "torchscript"),
        help="actserve's runtime (ACTSERVE_RUNTIME), and the bare runtime's",
    )
    parser.add_argument(
        "--set", dest="settings", action="append", default=[], help="actserve KEY=VALUE"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME:KEY=VALUE[,KEY=VALUE]: one more actserve with these settings on top of "
        "--set's, e.g. t1:decoder_threads=1 (settings compared in the same run)",
    )
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="another checkout of actserve (e.g. `git worktree add /tmp/before main~3`), "
        "served too as 'before': before/after ratios from one run",
    )
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    if args.requests > 5000 or max(levels) > 256:
        parser.error("bounded: at most 5000 requests and 256 concurrent")

    video_path = args.video or demo_video()
    video = video_path.read_bytes()
    manifest = ModelStore(args.store).resolve(args.model)
    profile = args.profile or manifest.default_profile
    per_request = 1 if profile == "fast" else manifest.spec.recipe.num_views
    print(
        f"{manifest.name} v{manifest.version} ({manifest.backbone}), {profile} profile: "
        f"{per_request} views/request; video {video_path.name} ({len(video):,} B); "
        f"{os.cpu_count()} CPUs; {args.requests} requests × {args.rounds} rounds per level"
    )

    bare = BareRuntime(args.store, args.model, video_path, args.max_batch_views, profile)
    bare.load(args.runtime)
    print(
        f"bare runtime: {bare.description}, batches of {args.max_batch_views}, "
        f"{bare.lanes} at once; load average {load_average()}\n",
        flush=True,
    )
    args.settings.insert(0, f"runtime={args.runtime}")
    limits: dict[int, Limits] = {}
    if args.door == "tensors":
        payload = tensor_payload(manifest.spec.tensors, bare.clips[:per_request])
        args.servers = ",".join(n for n in args.servers.split(",") if n != "litserve")
    else:
        payload = Payload(files={"video": ("v", video)})

    args.variants = dict(_variant(v, parser) for v in args.variant)
    names = args.servers.split(",") + list(args.variants) + (["before"] if args.before else [])
    with servers(names, args, profile) as running:
        for server in running:
            if args.door == "tensors":
                server.path = f"/v2/models/{manifest.name}/infer"
            warm_up(server, payload, args.warmup)
        for level in levels:
            # The limits in the same stretch of time (shared machines drift): the bare
            # runtime on either side of the level, its mean the limit.
            bare_before = bare.rate()
            for round_ in range(args.rounds):
                order = running if round_ % 2 == 0 else running[::-1]
                for server in order:
                    drive_level(server, payload, level, args, profile)
            bare_after = bare.rate()
            decodes = args.door == "classify"
            limits[level] = Limits(
                (bare_before + bare_after) / 2 / per_request,
                plain_decode_rate(video_path, args.decode_workers) if decodes else None,
                service_decode_rate(video_path, manifest.spec.recipe, profile, args.decode_workers)
                if decodes
                else None,
            )
            print(
                f"concurrency {level} done; {limits[level]} (before the level "
                f"{bare_before / per_request:.2f}, after {bare_after / per_request:.2f}); "
                f"load {load_average()}",
                flush=True,
            )
    bare.close()
    report(running, levels, limits)


@dataclass(frozen=True)
class Limits:
    """The limits at one level; the decode rates are None through the tensors door."""

    inference: float  # req/s of the bare runtime, all cores
    plain_decode: float | None  # files/s of a plain PyAV decode, every frame
    service_decode: float | None  # req/s of the service's own decode at the profile

    @property
    def own(self) -> float:
        return min(self.inference, self.plain_decode or self.inference)

    @property
    def shared(self) -> float:
        """Both stages on the same cores: each request costs its decode and its inference."""
        if self.service_decode is None:
            return self.inference
        return 1 / (1 / self.inference + 1 / self.service_decode)

    def __str__(self) -> str:
        if self.service_decode is None:
            return f"bare runtime {self.inference:.2f} req/s"
        return (
            f"bare runtime {self.inference:.2f} req/s, plain decode {self.plain_decode:.1f} "
            f"files/s, the service's decode {self.service_decode:.1f} req/s; own limit "
            f"{self.own:.2f}, shared-core ceiling {self.shared:.2f} req/s"
        )


def load_average() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


# The servers.


def _variant(text: str, parser: argparse.ArgumentParser) -> tuple[str, list[str]]:
    name, _, settings = text.partition(":")
    if not name or name in ("actserve", "litserve", "before") or "=" not in settings:
        parser.error(f"--variant {text!r}: NAME:KEY=VALUE[,KEY=VALUE], NAME a new name")
    return name, settings.split(",")


@contextmanager
def servers(names: list[str], args: argparse.Namespace, profile: str) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        for name in names:
            port = free_port()
            env = None
            if name in ("actserve", "before") or name in args.variants:
                command = [
                    sys.executable, "-m", "actserve", "serve", "--port", str(port),
                    "--store", str(args.store), "--log-level", "warning",
                    "--set", f"decode_workers={args.decode_workers}",
                    "--set", f"max_batch_views={args.max_batch_views}",
                    "--set", "max_queue_views=100000",
                    # measure throughput, not admission: nothing is refused at the door
                    "--set", "max_pending_decodes=100000",
                    "--set", "max_concurrent_uploads=100000",
                ]  # fmt: skip
                if name != "before":
                    for item in (*args.settings, *args.variants.get(name, ())):
                        command += ["--set", item]
                if args.model:
                    command += ["--model", args.model]
                path, ready = "/classify", "/readyz"
                if name == "before":
                    env = {**os.environ, "PYTHONPATH": str(args.before.resolve())}
            elif name == "litserve":
                try:
                    import litserve  # noqa: F401
                except ImportError:
                    print("litserve: not installed (pip install -e '.[bench]'); left out")
                    continue
                command = [
                    sys.executable, str(PEER), "--port", str(port), "--store", str(args.store),
                    "--workers", str(args.decode_workers), "--profile", profile,
                ]  # fmt: skip
                if args.model:
                    command += ["--model", args.model]
                path, ready = "/predict", "/health"
            else:
                raise SystemExit(f"unknown server {name!r}: actserve or litserve")
            # Its own session: the servers' worker processes go with them at the end.
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
                cwd=cwd(name, args),
            )
            server = Server(name, f"http://127.0.0.1:{port}", path, process)
            started.append(server)
            wait_ready(server, ready)
        yield started
    finally:
        for server in started:
            stop(server.process, signal.SIGTERM)
        for server in started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.process.wait(timeout=30)
            stop(server.process, signal.SIGKILL)


def stop(process: subprocess.Popen, signum: int) -> None:
    """Signal the server's whole process group (its workers included)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def cwd(name: str, args: argparse.Namespace) -> Path | None:
    """The 'before' server runs from its own checkout, so that its code is imported."""
    return args.before.resolve() if name == "before" else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(server: Server, path: str, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"{server.name} exited during start-up ({server.process.returncode})")
        try:
            if httpx.get(server.url + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{server.name} was not ready within {timeout_s:.0f} s")


@dataclass(frozen=True)
class Payload:
    """One request's body: a video upload, or preprocessed clips in the OIP binary form."""

    files: dict | None = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def post(self, client: httpx.Client | httpx.AsyncClient, path: str, **params):
        return client.post(
            path, params=params, files=self.files, content=self.content, headers=self.headers
        )


def tensor_payload(names: TensorNames, clips: np.ndarray) -> Payload:
    """`clips` as an Open Inference Protocol request (binary tensor extension), the logits
    asked for in binary."""
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": names.input,
                    "shape": list(clips.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": clips.nbytes},
                }
            ],
            "outputs": [{"name": names.logits, "parameters": {"binary_data": True}}],
        }
    ).encode()
    return Payload(
        content=header + np.ascontiguousarray(clips, np.float32).tobytes(),
        headers={
            "Inference-Header-Content-Length": str(len(header)),
            "Content-Type": "application/octet-stream",
        },
    )


def warm_up(server: Server, payload: Payload, count: int) -> None:
    with httpx.Client(base_url=server.url, timeout=300) as client:
        for _ in range(count):
            payload.post(client, server.path).raise_for_status()


# The load.


def drive_level(
    server: Server, payload: Payload, level: int, args: argparse.Namespace, profile: str
) -> None:
    served = server.name != "litserve"
    before = scrape(server) if served else {}
    latencies, errors, seconds = asyncio.run(drive(server, payload, level, args.requests, profile))
    if errors:
        print(f"{server.name} at {level}: {errors} errors: {'; '.join(server.failures)}")
    server.latencies.setdefault(level, []).extend(latencies)
    server.seconds[level] = server.seconds.get(level, 0.0) + seconds
    server.errors[level] = server.errors.get(level, 0) + errors
    if served:
        after = scrape(server)
        requests = max(after.get("actserve_request_duration_seconds_count", 0)
                       - before.get("actserve_request_duration_seconds_count", 0), 1)  # fmt: skip
        stages = server.stages.setdefault(level, {})
        for stage in STAGES:
            name = f"actserve_{stage}_duration_seconds_sum"
            spent = 1e3 * (after.get(name, 0) - before.get(name, 0)) / requests
            stages[stage] = stages.get(stage, 0.0) + spent / args.rounds
        views, batches = (
            after.get(f"actserve_batch_size_views_{part}", 0)
            - before.get(f"actserve_batch_size_views_{part}", 0)
            for part in ("sum", "count")
        )
        stages["batch"] = stages.get("batch", 0.0) + views / max(batches, 1) / args.rounds


async def drive(
    server: Server, payload: Payload, level: int, requests: int, profile: str
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    query = {"profile": profile} if server.path == "/classify" else {}
    limits = httpx.Limits(max_connections=level, max_keepalive_connections=level)
    async with httpx.AsyncClient(base_url=server.url, timeout=300, limits=limits) as client:
        remaining = iter(range(requests))

        async def worker() -> None:
            nonlocal errors
            for _ in remaining:
                started = time.perf_counter()
                response = await payload.post(client, server.path, **query)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    errors += 1
                    server.failures.add(f"{response.status_code} {response.text[:120]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(level)))
        return latencies, errors, time.perf_counter() - started


def scrape(server: Server) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in httpx.get(server.url + "/metrics", timeout=30).text.splitlines():
        if line.startswith("actserve_") and " " in line:
            sample, value = line.rsplit(" ", 1)
            name = sample.split("{")[0]
            values[name] = values.get(name, 0.0) + float(value)
    return values


# The limits.


class BareRuntime:
    """The runtime the service uses, configured as it configures it by default, alone in this
    process on this video's views: views per second in full batches of `batch`, as many at
    once as it has lanes (OpenVINO's streams), from as many threads."""

    def __init__(
        self, store: Path, model: str | None, video_path: Path, batch: int, profile: str
    ) -> None:
        self.store, self.batch = ModelStore(store), batch
        self.manifest = self.store.resolve(model)
        recipe = self.manifest.spec.recipe
        views = decode_video(video_path, recipe, DecodeOptions(profile=profile), VideoLimits())
        self.clips = np.concatenate([views.views] * (batch // len(views.views) + 1))[:batch]

    def load(self, kind: str) -> None:
        directory = self.store.version_dir(self.manifest.name, self.manifest.version)
        self.runtime = load_runtime(
            self.manifest, directory, RuntimeOptions(kind=kind, device="cpu")
        )
        self.description = self.runtime.description
        self.lanes = getattr(self.runtime, "lanes", 1)
        self.runtime.run(self.clips)

    def rate(self, seconds: float = 5.0) -> float:
        stop = time.perf_counter() + seconds
        done = [0] * self.lanes

        def lane(i: int) -> None:
            while time.perf_counter() < stop:
                self.runtime.run(self.clips)
                done[i] += self.batch

        started = time.perf_counter()
        with ThreadPoolExecutor(self.lanes) as pool:
            list(pool.map(lane, range(self.lanes)))
        return sum(done) / (time.perf_counter() - started)

    def close(self) -> None:
        self.runtime.close()


def service_decode_rate(path: Path, recipe, profile: str, processes: int, seconds: float = 4.0):
    """Requests per second of the service's own decode (`decode_video`: index, plan, read
    and normalise the profile's views) in `processes` processes at once."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        jobs = [(os.fspath(path), recipe, profile, seconds)] * processes
        counts = pool.starmap(_service_decode_repeatedly, jobs)
    return sum(counts) / seconds


def _service_decode_repeatedly(path: str, recipe, profile: str, seconds: float) -> float:
    started = time.perf_counter()
    files = 0
    while True:
        decode_video(path, recipe, DecodeOptions(profile=profile, decoder_threads=1), VideoLimits())
        files += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return files * seconds / elapsed


def plain_decode_rate(path: Path, processes: int, seconds: float = 4.0) -> float:
    """Files per second of `processes` processes each decoding every frame of `path`."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        counts = pool.starmap(_decode_repeatedly, [(os.fspath(path), seconds)] * processes)
    return sum(counts) / seconds


def _decode_repeatedly(path: str, seconds: float) -> float:
    """Whole decodes of `path` (a fraction for the last one) in `seconds`, one thread."""
    started = time.perf_counter()
    files = 0
    while True:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_count = 1
            for _ in container.decode(stream):
                pass
        files += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return files * seconds / elapsed


def demo_video() -> Path:
    from actserve.demo.synthetic import render_video, write_video

    path = Path(tempfile.mkdtemp()) / "demo.mp4"
    write_video(render_video("moving right", seed=1, height=240, width=320), str(path))
    return path


# The report.


def report(running: list[Server], levels: list[int], limits: dict[int, Limits]) -> None:
    by_name = {s.name: s for s in running}
    ours = by_name.get("actserve")
    print()
    print("| server | concurrency | req/s | p50 ms | p99 ms | errors | ÷ own limit "
          "| ÷ bare runtime | ÷ shared-core ceiling |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for level in levels:
        limit = limits[level]
        for server in running:
            rate = server.rate(level)
            print(
                f"| {server.name} | {level} | {rate:.2f} "
                f"| {server.percentile(level, 50):.0f} | {server.percentile(level, 99):.0f} "
                f"| {server.errors[level]} | {rate / limit.own:.2f} "
                f"| {rate / limit.inference:.2f} | {rate / limit.shared:.2f} |"
            )
    for other in running:
        if ours is None or other is ours:
            continue
        print()
        print(f"| concurrency | actserve ÷ {other.name} (req/s) | p99 actserve ÷ {other.name} |")
        print("|---:|---:|---:|")
        for level in levels:
            print(
                f"| {level} | {ours.rate(level) / other.rate(level):.2f} "
                f"| {ours.percentile(level, 99) / other.percentile(level, 99):.2f} |"
            )
    for server in running:
        if server.name == "litserve":
            continue
        print()
        print(
            f"{server.name} stage split, mean ms per request from /metrics (inference: batch "
            "seconds ÷ requests, a request waits for its whole batch), and views per batch:"
        )
        print("| concurrency | " + " | ".join(STAGES) + " | views/batch |")
        print("|---:|" + "---:|" * (len(STAGES) + 1))
        for level in levels:
            stages = server.stages.get(level, {})
            print(
                f"| {level} | "
                + " | ".join(f"{stages.get(s, 0):.1f}" for s in (*STAGES, "batch"))
                + " |"
            )


if __name__ == "__main__":
    main()
