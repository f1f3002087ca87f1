"""A durable job beside interactive traffic: /classify's latency with a long job running and
without, and the job's own throughput, alone and under that traffic.

    python benchmarks/jobs.py                          # a 10-minute video, the demo model
    python benchmarks/jobs.py --minutes 2 --rounds 2   # quicker

One service (`service.embedded`, the bundled demo store unless --store) and one run, the
variants interleaved round by round so the shared machine's noise falls on both:

    quiet     /classify at concurrency 8, no job
    busy      the same, while a job over the long video runs (its chunks decode within
              ACTSERVE_JOBS_DECODE_SHARE of the workers, after any waiting request)
    alone     the job with no other traffic (its video-seconds per wall-second)

Reports /classify p50/p99 in each, the busy ÷ quiet ratios (the goal: p99 ≤ 1.5×), the job's
throughput (video-seconds per wall-second, windows/s) alone and busy, and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from service.embedded import EmbeddedServer
from service.settings import Settings


def make_long_video(path: Path, minutes: float, size: tuple[int, int]) -> None:
    from actserve.demo.synthetic import ACTIONS, render_sequence, write_video

    seconds_each = 10.0
    count = max(1, round(minutes * 60 / seconds_each))
    actions = [ACTIONS[i % len(ACTIONS)] for i in range(count)]
    width, height = size
    frames = render_sequence(actions, seconds_each=seconds_each, seed=3, height=height, width=width)
    write_video(frames, str(path))


def make_short_video(path: Path) -> None:
    from actserve.demo.synthetic import render_video, write_video

    write_video(render_video("moving right", seed=1, height=240, width=320), str(path))


async def classify_burst(url: str, video: bytes, concurrency: int, requests: int) -> list[float]:
    """Latencies of `requests` /classify calls, `concurrency` at a time (every one must be
    answered 200: the decode backlog admits the whole concurrency)."""
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        remaining = iter(range(requests))

        async def worker() -> None:
            for _ in remaining:
                started = time.perf_counter()
                response = await client.post("/classify", files={"video": ("v.mp4", video)})
                response.raise_for_status()
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


class JobProbe:
    """A job over the long video, its progress read before and after a phase."""

    def __init__(self, client: httpx.Client, video: Path) -> None:
        self.client, self.video, self.id = client, video, None

    def start(self) -> None:
        with self.video.open("rb") as f:
            response = self.client.post("/jobs", files={"video": f}, params={"features": "labels"})
        response.raise_for_status()
        self.id = response.json()["id"]

    def progress(self) -> tuple[int, int | None, float]:
        status = self.client.get(f"/jobs/{self.id}").json()
        return status["progress"]["windows_done"], status["progress"]["windows_total"], time.time()

    def wait_planned(self) -> None:
        while self.progress()[1] is None:
            state = self.client.get(f"/jobs/{self.id}").json()
            if state["state"] in ("failed", "cancelled"):
                raise RuntimeError(f"the benchmark's job {state['state']}: {state['error']}")
            time.sleep(0.1)

    def cancel(self) -> None:
        self.client.delete(f"/jobs/{self.id}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="Length of the job's video.")
    parser.add_argument("--size", default="320x240", help="The long video's frame size.")
    parser.add_argument("--store", type=Path, default=None, help="Model store (default: bundled).")
    parser.add_argument("--short", type=Path, default=None, help="/classify's video.")
    parser.add_argument("--long", type=Path, default=None, help="The job's video (else made).")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=64, help="/classify requests a phase.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--alone-s", type=float, default=15.0, help="Seconds of the job alone.")
    parser.add_argument("--decode-workers", type=int, default=2)
    parser.add_argument("--share", type=float, default=0.5, help="ACTSERVE_JOBS_DECODE_SHARE.")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="actserve-jobs-bench-"))
    long_video = args.long or work / "long.mp4"
    if args.long is None:
        width, height = (int(v) for v in args.size.split("x"))
        started = time.perf_counter()
        make_long_video(long_video, args.minutes, (width, height))
        took = time.perf_counter() - started
        print(f"long video: {args.minutes:g} min at {args.size} ({took:.0f} s)")
    short = args.short or work / "short.mp4"
    if args.short is None:
        make_short_video(short)
    video = short.read_bytes()

    values: dict[str, object] = dict(
        decode_workers=args.decode_workers,
        # every /classify of the burst admitted: the latency of all of them is measured
        max_pending_decodes=max(2 * args.decode_workers, args.concurrency + 2),
        jobs_dir=work / "jobs",
        jobs_decode_share=args.share,
        request_timeout_s=600,
        decode_timeout_s=600,
        max_duration_s=max(600.0, args.minutes * 60 + 1),
        max_frames=max(18_000, int(args.minutes * 60 * 30) + 30),
    )
    if args.store is not None:
        values["store"] = args.store
    settings = Settings(**values)
    quiet: list[float] = []
    busy: list[float] = []
    busy_rates: list[tuple[float, float]] = []  # (windows, seconds) per busy phase
    with EmbeddedServer(settings) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        asyncio.run(classify_burst(server.url, video, args.concurrency, 2 * args.concurrency))
        job = JobProbe(c, long_video)
        job.start()
        job.wait_planned()
        total = job.progress()[1] or 1
        duration = args.minutes * 60
        while (before := job.progress())[0] == 0:  # from the first chunk on (warm)
            time.sleep(0.05)
        time.sleep(args.alone_s)
        while (after := job.progress())[0] == before[0]:
            time.sleep(0.05)
        alone = ((after[0] - before[0]), after[2] - before[2])
        job.cancel()
        for _ in range(args.rounds):
            quiet += asyncio.run(classify_burst(server.url, video, args.concurrency, args.requests))
            job.start()
            job.wait_planned()
            before = job.progress()
            busy += asyncio.run(classify_burst(server.url, video, args.concurrency, args.requests))
            after = job.progress()
            busy_rates.append((after[0] - before[0], after[2] - before[2]))
            job.cancel()
        load = os.getloadavg()
    seconds_per_window = duration / total
    alone_windows_s = alone[0] / alone[1]
    busy_windows_s = sum(w for w, _ in busy_rates) / sum(s for _, s in busy_rates)
    results = {
        "classify p50 quiet (ms)": 1e3 * statistics.median(quiet),
        "classify p50 busy (ms)": 1e3 * statistics.median(busy),
        "classify p99 quiet (ms)": 1e3 * percentile(quiet, 0.99),
        "classify p99 busy (ms)": 1e3 * percentile(busy, 0.99),
        "p50 busy ÷ quiet": statistics.median(busy) / statistics.median(quiet),
        "p99 busy ÷ quiet": percentile(busy, 0.99) / percentile(quiet, 0.99),
        "job windows/s alone": alone_windows_s,
        "job windows/s busy": busy_windows_s,
        "job video-s per wall-s alone": alone_windows_s * seconds_per_window,
        "job video-s per wall-s busy": busy_windows_s * seconds_per_window,
        "load average (1 min) at the end": load[0],
    }
    print(
        f"\n{args.rounds} rounds of {args.requests} /classify at concurrency {args.concurrency}, "
        f"{args.decode_workers} decode workers, jobs' share {args.share:g}; the job: "
        f"{total} windows over {duration:g} s; {os.cpu_count()} CPUs\n"
    )
    print("| measure | value |\n|---|---|")
    for name, value in results.items():
        print(f"| {name} | {value:.2f} |")
    return results


if __name__ == "__main__":
    main()
