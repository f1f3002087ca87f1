"""Overload: does the service shed what it cannot serve, and keep what it accepts fast?

    python benchmarks/overload.py                    # bundled demo model, a 2 s demo clip
    python benchmarks/overload.py --load 4 --seconds 30 --video clip.mp4
    python benchmarks/overload.py --pending 1,2      # other backlog bounds beside the default

The service runs as its own process (`actserve serve` on a free loopback port), so the load
generator here does not share its event loop. In one run, for the service with admission
control (the defaults) and without it (the door and the decode backlog unbounded, as before
admission control):

1. capacity: a closed loop at 2 × decode-workers concurrency, requests/s;
2. unloaded latency: one request at a time, p50 and p99;
3. overload: an open loop (Poisson arrivals) at `--load` × capacity for `--seconds`: the share
   refused (429), any 5xx, p50/p99 of the accepted requests and their ratio to the unloaded
   p99, and how honest Retry-After is: for each refusal, the Retry-After it stated divided by
   the time the work already admitted at that moment really took to finish.

The accepted requests' p99 is printed twice: as the load generator saw it, and as the
service measured it (`timings.total_ms`, from the route's start to the answer): on a small box
the generator shares the cores, and its own queueing shows in the first. Also printed: the
server's spooled upload files and open file descriptors at the worst moment. All ratios come
from this one run; absolute times drift on shared machines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

UNBOUNDED = {
    "ACTSERVE_MAX_CONCURRENT_UPLOADS": "100000",
    "ACTSERVE_MAX_PENDING_DECODES": "100000",
    "ACTSERVE_MAX_DECODE_WAIT_S": "100000",
    "ACTSERVE_MAX_QUEUE_VIEWS": "1000000",
}


@dataclass
class Outcome:
    sent_at: float
    done_at: float
    status: int
    retry_after: float | None = None
    #: The service's own `timings.total_ms` of an accepted request, in seconds: its latency
    #: without the load generator's share of the box (both run on the same cores).
    server_s: float | None = None


@dataclass
class Run:
    outcomes: list[Outcome] = field(default_factory=list)
    worst_spool: int = 0
    worst_fds: int = 0

    def accepted(self) -> list[float]:
        return [o.done_at - o.sent_at for o in self.outcomes if o.status == 200]

    def accepted_server(self) -> list[float]:
        return [o.server_s for o in self.outcomes if o.status == 200 and o.server_s is not None]

    def count(self, predicate) -> int:
        return sum(1 for o in self.outcomes if predicate(o.status))


class Server:
    """`actserve serve` in a child process, with its own spool directory."""

    def __init__(self, extra_env: dict[str, str], workers: int) -> None:
        self.spool = Path(tempfile.mkdtemp(prefix="actserve-overload-"))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        env = {
            **os.environ,
            "ACTSERVE_UPLOAD_DIR": str(self.spool),
            "ACTSERVE_DECODE_WORKERS": str(workers),
            **extra_env,
        }
        command = [sys.executable, "-m", "actserve", "serve", "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError("the server exited during start-up")
            time.sleep(0.2)
        raise TimeoutError("the server did not become ready")

    def __exit__(self, *exc_info: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        shutil.rmtree(self.spool, ignore_errors=True)

    def footprint(self) -> tuple[int, int]:
        """(spooled upload files, open file descriptors) of the server now."""
        fds = len(os.listdir(f"/proc/{self.process.pid}/fd"))
        return len(list(self.spool.iterdir())), fds


async def post(client: httpx.AsyncClient, video: bytes) -> Outcome:
    sent = time.perf_counter()
    try:
        response = await client.post("/classify", files={"video": ("clip.mp4", video)})
        status = response.status_code
        retry = response.headers.get("retry-after")
        server_s = response.json()["timings"]["total_ms"] / 1e3 if status == 200 else None
    except httpx.HTTPError:
        status, retry, server_s = 0, None, None
    done = time.perf_counter()
    return Outcome(sent, done, status, float(retry) if retry else None, server_s)


async def closed_loop(url: str, video: bytes, concurrency: int, seconds: float) -> list[Outcome]:
    outcomes: list[Outcome] = []
    stop = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:

        async def worker() -> None:
            while time.perf_counter() < stop:
                outcomes.append(await post(client, video))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes


async def open_loop(server: Server, video: bytes, rate: float, seconds: float) -> Run:
    run = Run()
    limits = httpx.Limits(max_connections=4000, max_keepalive_connections=200)
    rng = random.Random(0)
    async with httpx.AsyncClient(base_url=server.url, timeout=600, limits=limits) as client:
        tasks = []
        started = time.perf_counter()
        next_at = started
        while next_at - started < seconds:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            tasks.append(asyncio.create_task(post(client, video)))
            next_at += rng.expovariate(rate)
            spool, fds = server.footprint()
            run.worst_spool, run.worst_fds = max(run.worst_spool, spool), max(run.worst_fds, fds)
        run.outcomes = list(await asyncio.gather(*tasks))
    return run


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def goodput(run: Run) -> float:
    """Accepted requests per second, over the time from the first request to the last
    answer (without a bound, answers arrive long after the overload ends)."""
    ok = [o for o in run.outcomes if o.status == 200]
    if not ok:
        return 0.0
    return len(ok) / (max(o.done_at for o in ok) - min(o.sent_at for o in run.outcomes))


def honesty(run: Run) -> float:
    """Median over refusals of Retry-After ÷ the time the work admitted before the refusal
    really took to finish (from the moment of the refusal)."""
    admitted = sorted((o for o in run.outcomes if o.status == 200), key=lambda o: o.sent_at)
    ratios = []
    for refusal in (o for o in run.outcomes if o.status == 429 and o.retry_after):
        before = [o.done_at for o in admitted if o.sent_at <= refusal.sent_at]
        if before:
            drained = max(before) - refusal.done_at
            if drained > 0.05:
                ratios.append(refusal.retry_after / drained)
    return statistics.median(ratios) if ratios else float("nan")


def measure(name: str, env: dict[str, str], video: bytes, args: argparse.Namespace) -> dict:
    with Server(env, args.workers) as server:
        asyncio.run(closed_loop(server.url, video, 2, 2.0))  # warm up
        alone = asyncio.run(closed_loop(server.url, video, 1, args.calibrate_s))
        unloaded = [o.done_at - o.sent_at for o in alone if o.status == 200]
        unloaded_server = [o.server_s for o in alone if o.status == 200 and o.server_s]
        capacity_run = asyncio.run(
            closed_loop(server.url, video, 2 * args.workers, args.calibrate_s)
        )
        ok = [o for o in capacity_run if o.status == 200]
        capacity = len(ok) / (max(o.done_at for o in ok) - min(o.sent_at for o in ok))
        run = asyncio.run(open_loop(server, video, args.load * capacity, args.seconds))
    accepted = run.accepted()
    p99_unloaded = percentile(unloaded, 0.99)
    return {
        "mode": name,
        "capacity": capacity,
        "unloaded p50": percentile(unloaded, 0.5),
        "unloaded p99": p99_unloaded,
        "offered": args.load * capacity,
        "sent": len(run.outcomes),
        "200": run.count(lambda s: s == 200),
        "429": run.count(lambda s: s == 429),
        "5xx/other": run.count(lambda s: s not in (200, 429)),
        "accepted p50": percentile(accepted, 0.5),
        "accepted p99": percentile(accepted, 0.99),
        "p99 ÷ unloaded p99": percentile(accepted, 0.99) / p99_unloaded,
        "server-side: accepted p99": percentile(run.accepted_server(), 0.99),
        "server-side: ÷ unloaded p99": percentile(run.accepted_server(), 0.99)
        / percentile(unloaded_server, 0.99),
        "goodput (req/s)": goodput(run),
        "Retry-After ÷ real drain": honesty(run),
        "worst spooled uploads": run.worst_spool,
        "worst open fds": run.worst_fds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, help="default: a 2 s 320×240 demo clip")
    parser.add_argument("--load", type=float, default=4.0, help="offered load ÷ capacity")
    parser.add_argument("--seconds", type=float, default=20.0, help="overload duration")
    parser.add_argument("--calibrate-s", type=float, default=8.0)
    parser.add_argument("--workers", type=int, default=2, help="decode workers")
    parser.add_argument(
        "--pending",
        default="",
        help="also run with ACTSERVE_MAX_PENDING_DECODES at these requests per worker "
        "(comma-separated, e.g. 1,2): the backlog bound's trade of latency for refusals",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME:ACTSERVE_X=VALUE[,...]: one more run with these variables set",
    )
    args = parser.parse_args()
    if args.video is None:
        from actserve.demo.synthetic import render_video, write_video

        args.video = Path(tempfile.mkdtemp()) / "clip.mp4"
        write_video(render_video("moving right", seed=1, height=240, width=320), str(args.video))
    video = args.video.read_bytes()
    rows = [measure("admission on (defaults)", {}, video, args)]
    for variant in args.variant:
        name, _, assignments = variant.partition(":")
        env = dict(item.split("=", 1) for item in assignments.split(",") if "=" in item)
        rows.append(measure(name, env, video, args))
    for per_worker in filter(None, args.pending.split(",")):
        bound = {"ACTSERVE_MAX_PENDING_DECODES": str(int(per_worker) * args.workers)}
        rows.append(measure(f"{per_worker} pending per worker", bound, video, args))
    rows.append(measure("admission off", UNBOUNDED, video, args))
    keys = list(rows[0])
    width = max(len(k) for k in keys)
    print(f"\noffered load {args.load:g}× capacity for {args.seconds:g} s, {args.workers} workers")
    print(f"{'':{width}}  " + "  ".join(f"{r['mode']:>24}" for r in rows))
    for key in keys[1:]:
        cells = []
        for row in rows:
            value = row[key]
            cells.append(f"{value:>24.3f}" if isinstance(value, float) else f"{value:>24}")
        print(f"{key:{width}}  " + "  ".join(cells))


if __name__ == "__main__":
    main()
