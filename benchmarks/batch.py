"""`actserve batch` against the service under load, on the same files: videos per second.

    python benchmarks/batch.py                      # 100 demo videos, the bundled demo model
    python benchmarks/batch.py --videos 300 --concurrency 16 --workers 2

Both run the same pipeline (decode workers, batcher, runtime) with the same number of decode
workers, in this process one after the other: the batch run in-process (`LocalPipeline` +
`run_batch`, what the command does, writing JSON Lines), the service on a real uvicorn on
127.0.0.1 fed by an HTTP client at fixed concurrency. Start-up (workers, model load) is timed
apart and left out of the rates. The ratio is the point; absolute rates drift on shared
machines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import httpx

from actserve.batch import BatchOptions, Results, run_batch
from actserve.demo.synthetic import ACTIONS, render_video, write_video
from actserve.local import LocalPipeline
from service.embedded import EmbeddedServer
from service.settings import BUNDLED_STORE, Settings


def make_videos(root: Path, count: int) -> list[Path]:
    paths = []
    for i in range(count):
        path = root / f"{i:04d}.mp4"
        action = ACTIONS[i % len(ACTIONS)]
        write_video(render_video(action, seed=8_000_000 + i, height=240, width=320), str(path))
        paths.append(path)
    return paths


async def batch_rate(paths: list[Path], args: argparse.Namespace, out: Path) -> tuple[float, float]:
    """(start-up seconds, videos/s) of a batch run."""
    started = time.perf_counter()
    local = LocalPipeline(args.store, args.model, workers=args.workers, max_queue_views=100_000)
    await local.__aenter__()
    ready = time.perf_counter()
    try:
        with Results(out) as results:
            await run_batch(
                local.classify,
                [str(p) for p in paths],
                BatchOptions(),
                results.write,
                concurrency=2 * local.workers,
            )
        errors = results.counts.get("error", 0)
    finally:
        await local.__aexit__()
    if errors:
        raise SystemExit(f"{errors} videos failed in the batch run; see {out}")
    return ready - started, len(paths) / (time.perf_counter() - ready)


async def service_rate(url: str, paths: list[Path], args: argparse.Namespace) -> float:
    """Videos/s of the service with `concurrency` clients posting every file once."""
    limits = httpx.Limits(max_connections=args.concurrency)
    remaining = iter(paths)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:

        async def worker() -> None:
            for path in remaining:
                response = await client.post(
                    "/classify",
                    params={"model": args.model},
                    files={"video": (path.name, path.read_bytes())},
                )
                if response.status_code != 200:
                    raise SystemExit(f"{path}: {response.status_code} {response.text}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        return len(paths) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=BUNDLED_STORE)
    parser.add_argument("--model", default="demo-actions")
    parser.add_argument("--videos", type=int, default=100)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    if args.videos > 2000 or args.concurrency > 256:
        parser.error("bounded: at most 2000 videos and 256 concurrent clients")

    with tempfile.TemporaryDirectory(prefix="actserve-bench-") as tmp:
        root = Path(tmp)
        paths = make_videos(root, args.videos)
        print(
            f"{args.videos} demo videos (320×240, 2 s, H.264), model {args.model}, "
            f"{args.workers} decode workers, {os.cpu_count()} cores"
        )
        startup, batch = asyncio.run(batch_rate(paths, args, root / "results.jsonl"))
        settings = Settings(store=args.store, decode_workers=args.workers, max_queue_views=100_000)
        started = time.perf_counter()
        with EmbeddedServer(settings) as server:
            ready = time.perf_counter() - started
            with httpx.Client(base_url=server.url, timeout=300) as client:  # warm-up
                client.post("/classify", files={"video": ("v", paths[0].read_bytes())})
            service = asyncio.run(service_rate(server.url, paths, args))
    print(f"{'run':34} {'start-up s':>10} {'videos/s':>9}")
    print(f"{'actserve batch':34} {startup:10.1f} {batch:9.2f}")
    print(f"{f'service, {args.concurrency} concurrent clients':34} {ready:10.1f} {service:9.2f}")
    print(f"\nbatch ÷ service: {batch / service:.2f}x videos/s")


if __name__ == "__main__":
    main()
