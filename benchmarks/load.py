"""Load the service on loopback and compare it with its raw runtime, batching on and off.

    python benchmarks/load.py                        # the bundled demo model, a demo video
    python benchmarks/load.py --store S --model M --video clip.mp4 --concurrency 16
    python benchmarks/load.py --rate 20 --requests 300   # open loop: 20 requests/s

For each mode a fresh server runs in this process (`service.embedded`: uvicorn on
127.0.0.1, a free port), gets a
few warm-up requests, then `--requests` more at fixed concurrency (closed loop) or at a fixed
rate (open loop, at most `--max-in-flight` outstanding). Printed per mode: client latency
p50/p90/p99, throughput, the server's per-request stage split read from /metrics, mean batch
size, and the ratio of the service's view throughput to the raw runtime's on the same views
(ONNX Runtime on batches of max_batch_views, nothing else running). All ratios come from
this one run; absolute times drift on shared machines.

"Batching off" sets max_batch_views to one request's views and the delay to 0: a batch then
holds (at most) one request, which is what a per-request server does.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from model_store import ModelStore
from service.embedded import EmbeddedServer
from service.runtimes import RuntimeOptions, load_runtime
from service.settings import BUNDLED_STORE, Settings
from service.video import DecodeOptions, VideoLimits, decode_video

STAGES = ("upload", "decode", "queue", "request")


@dataclass
class Result:
    mode: str
    latencies: list[float]
    seconds: float
    views: int
    stages_ms: dict[str, float]
    mean_batch: float
    errors: int


def scrape(client: httpx.Client) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("actserve_") and " " in line:
            sample, value = line.rsplit(" ", 1)
            name = sample.split("{")[0]
            values[name] = values.get(name, 0.0) + float(value)
    return values


async def drive(
    url: str, video: bytes, args: argparse.Namespace
) -> tuple[list[float], int, int, float]:
    latencies: list[float] = []
    views = errors = 0
    params = {"model": args.model} if args.model else {}
    if args.profile:
        params["profile"] = args.profile
    limits = httpx.Limits(max_connections=max(args.concurrency, args.max_in_flight))
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:

        async def one() -> None:
            nonlocal views, errors
            started = time.perf_counter()
            response = await client.post("/classify", params=params, files={"video": ("v", video)})
            latencies.append(time.perf_counter() - started)
            if response.status_code == 200:
                views += response.json()["video"]["views"]
            else:
                errors += 1

        started = time.perf_counter()
        if args.rate:
            gate = asyncio.Semaphore(args.max_in_flight)

            async def paced(delay: float) -> None:
                await asyncio.sleep(delay)
                async with gate:
                    await one()

            await asyncio.gather(*(paced(i / args.rate) for i in range(args.requests)))
        else:
            remaining = iter(range(args.requests))

            async def worker() -> None:
                for _ in remaining:
                    await one()

            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        return latencies, views, errors, time.perf_counter() - started


def run_mode(mode: str, settings: Settings, video: bytes, args: argparse.Namespace) -> Result:
    with EmbeddedServer(settings) as server, httpx.Client(base_url=server.url) as client:
        for _ in range(args.warmup):
            client.post("/classify", files={"video": ("v", video)}, timeout=300)
        before = scrape(client)
        latencies, views, errors, seconds = asyncio.run(drive(server.url, video, args))
        after = scrape(client)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    requests = max(delta.get("actserve_request_duration_seconds_count", 0), 1)
    stages = {
        stage: 1e3 * delta.get(f"actserve_{stage}_duration_seconds_sum", 0) / requests
        for stage in STAGES
    }
    executions = max(delta.get("actserve_inference_executions_total", 0), 1)
    stages["inference per batch"] = (
        1e3 * delta.get("actserve_inference_duration_seconds_sum", 0) / executions
    )
    return Result(
        mode,
        latencies,
        seconds,
        views,
        stages,
        delta.get("actserve_inference_items_total", 0) / executions,
        errors,
    )


def raw_throughput(
    store: Path, model: str | None, video_path: Path, batch: int, profile: str, seconds: float = 5.0
) -> float:
    """Views per second of the bare runtime on this video's views, in full batches."""
    manifest = ModelStore(store).resolve(model)
    views = decode_video(
        video_path, manifest.spec.recipe, DecodeOptions(profile=profile), VideoLimits()
    ).views
    clips = np.concatenate([views] * (batch // len(views) + 1))[:batch]
    runtime = load_runtime(
        manifest,
        ModelStore(store).version_dir(manifest.name, manifest.version),
        RuntimeOptions(device="cpu"),
    )
    runtime.run(clips)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        runtime.run(clips)
        done += batch
    return done / (time.perf_counter() - started)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1e3 if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=BUNDLED_STORE)
    parser.add_argument("--model", default=None)
    parser.add_argument("--video", type=Path, default=None, help="default: a demo video")
    parser.add_argument("--profile", choices=("fast", "accurate"), default=None)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, default=0.0, help="requests/s (open loop)")
    parser.add_argument("--max-in-flight", type=int, default=64)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--max-batch-views", type=int, default=32)
    parser.add_argument("--max-delay-ms", type=float, default=5.0)
    parser.add_argument("--decode-workers", type=int, default=2)
    parser.add_argument("--modes", default="on,off")
    args = parser.parse_args()
    if args.requests > 5000 or args.concurrency > 256:
        parser.error("bounded: at most 5000 requests and 256 concurrent")

    video_path = args.video
    if video_path is None:
        from actserve.demo.synthetic import render_video, write_video

        video_path = Path(tempfile.mkdtemp()) / "demo.mp4"
        write_video(render_video("moving right", seed=1, height=240, width=320), str(video_path))
    video = video_path.read_bytes()
    manifest = ModelStore(args.store).resolve(args.model)
    profile = args.profile or manifest.default_profile
    recipe = manifest.spec.recipe
    per_request = 1 if profile == "fast" else recipe.num_views
    base = dict(store=args.store, decode_workers=args.decode_workers, max_queue_views=100_000)
    modes = {
        "on": dict(max_batch_views=args.max_batch_views, max_delay_ms=args.max_delay_ms),
        "off": dict(max_batch_views=per_request, max_delay_ms=0),
    }
    load = f"{args.rate:g} req/s open loop" if args.rate else f"concurrency {args.concurrency}"
    print(
        f"{manifest.name} v{manifest.version} ({manifest.backbone}), {profile} profile: "
        f"{per_request} views/request; {args.requests} requests at {load}; "
        f"{args.decode_workers} decode workers; video {video_path.name} ({len(video):,} B)"
    )
    raw = raw_throughput(args.store, args.model, video_path, args.max_batch_views, profile)
    print(f"raw runtime: {raw:.1f} views/s (batches of {args.max_batch_views}, CPU)\n")
    results = [
        run_mode(m, Settings(**base, **modes[m]), video, args) for m in args.modes.split(",")
    ]
    header = (
        f"{'batching':9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'req/s':>7} "
        f"{'views/s':>8} {'÷ raw':>6} {'batch':>6} "
        + " ".join(f"{s:>9}" for s in STAGES)
        + f" {'infer/batch':>11} {'errors':>6}"
    )
    print(header)
    for r in results:
        views_per_s = r.views / r.seconds
        print(
            f"{r.mode:9} {percentile(r.latencies, 50):8.0f} {percentile(r.latencies, 90):8.0f} "
            f"{percentile(r.latencies, 99):8.0f} {len(r.latencies) / r.seconds:7.1f} "
            f"{views_per_s:8.1f} {views_per_s / raw:6.2f} {r.mean_batch:6.1f} "
            + " ".join(f"{r.stages_ms[s]:9.1f}" for s in STAGES)
            + f" {r.stages_ms['inference per batch']:11.1f} {r.errors:6d}"
        )
    if len(results) == 2:
        on, off = results
        speedup = (on.views / on.seconds) / (off.views / off.seconds)
        latency = statistics.median(on.latencies) / statistics.median(off.latencies)
        print(f"\nbatching on ÷ off: throughput {speedup:.2f}x, p50 latency {latency:.2f}x")
    print("(stage columns: mean ms per request from the server's histograms)")


if __name__ == "__main__":
    main()
