"""Live streams: how many real-time streams one box holds, and how fast events arrive.

    python benchmarks/streams.py                          # the demo model, K = 1, 2, 4, ...
    python benchmarks/streams.py --store STORE --model x3d_s --size 1280x720 --max-streams 16

A synthetic H.264 video (the demo's motions: `standing still` for 6 s, then `rotating
clockwise` for 6 s; the onset of the action is at 6 s of every 12 s loop) is served in a loop
at real time, K times at once, and K streams are added to a service on 127.0.0.1. For each K
the run warms up, then measures for `--seconds`: windows classified and dropped, the latency
from each onset in the video to the `start` SSE event of `rotating clockwise`, and the CPU
seconds the service process and its stream readers spent, per stream and second of video. K
doubles until the streams no longer hold: a window or frame dropped, or fewer windows than the
stride asks for (readers behind real time); the last K that held is the answer.

Sources: `--source http` (default; nothing to install) remuxes the file packet by packet as
MPEG-TS over HTTP, paced at real time like `ffmpeg -re` (a PyAV subprocess: no re-encoding).
`--source rtsp` serves the same file from GStreamer's RTSP server, one mount per stream
(`apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good
gstreamer1.0-plugins-bad`); it runs under the system's python3.

The box is reported (`os.getloadavg()`) before and after each K: on a shared machine the
figures are only comparable within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

ONSET_S = 6.0  # the action starts this far into each loop
LOOP_S = 12.0
ACTION = "rotating clockwise"


def serve_source(video: Path, log: Path) -> None:
    """(The source subprocess.) Serve `video` in a loop as MPEG-TS over HTTP, packets copied
    and paced at real time (what `ffmpeg -re -stream_loop -1 -c copy` does); each
    connection's start goes to `log` as `PATH WALL_TIME`."""
    import av

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.end_headers()
            started = time.time()
            with log.open("a") as f:
                f.write(f"{self.path} {started}\n")
            with contextlib.suppress(OSError, av.error.FFmpegError):
                self._loop(av.open(self.wfile, "w", format="mpegts"), started)

        def _loop(self, out, started: float) -> None:
            vout = None
            for loop in itertools.count():
                with av.open(str(video)) as source:
                    vin = source.streams.video[0]
                    vout = vout or out.add_stream_from_template(vin)
                    shift = round(loop * LOOP_S / vin.time_base)
                    for packet in source.demux(vin):
                        if packet.pts is None:
                            continue
                        due = started + float(packet.pts * vin.time_base) + loop * LOOP_S
                        time.sleep(max(0.0, due - time.time()))
                        packet.pts += shift
                        if packet.dts is not None:
                            packet.dts += shift
                        packet.stream = vout
                        out.mux(packet)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


def make_video(path: Path, size: tuple[int, int]) -> None:
    from actserve.demo.synthetic import render_sequence, write_video

    width, height = size
    frames = render_sequence(
        ["standing still", ACTION], seconds_each=ONSET_S, seed=3, height=height, width=width
    )
    write_video(frames, str(path))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def batch_totals(client: httpx.Client) -> tuple[float, float]:
    """(views, batches) the batchers have run so far, from /metrics."""
    totals = {"actserve_batch_size_views_sum": 0.0, "actserve_batch_size_views_count": 0.0}
    for line in client.get("/metrics").text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in totals:
            totals[name] += float(line.rsplit(" ", 1)[1])
    return totals["actserve_batch_size_views_sum"], totals["actserve_batch_size_views_count"]


def reader_pids() -> list[int]:
    import multiprocessing

    return [p.pid for p in multiprocessing.active_children() if p.name.startswith("stream-")]


class Watcher(threading.Thread):
    """Reads a stream's SSE and records when each start of ACTION arrived."""

    def __init__(self, url: str, stream_id: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stream_id, self.arrivals = url, stream_id, []

    def run(self) -> None:
        try:
            with httpx.stream(
                "GET", f"{self.url}/streams/{self.stream_id}/events", timeout=None
            ) as r:
                for line in r.iter_lines():
                    if line.startswith("data:"):
                        event = json.loads(line[5:])
                        if event["type"] == "start" and event["label"] == ACTION:
                            self.arrivals.append(time.time())
        except httpx.HTTPError:
            pass


def latencies(arrivals: list[float], started: float, since: float) -> list[float]:
    """Arrival minus the latest onset before it, for arrivals after `since`."""
    out = []
    for arrival in arrivals:
        if arrival < since:
            continue
        loops = (arrival - started - ONSET_S) // LOOP_S
        out.append(arrival - (started + ONSET_S + loops * LOOP_S))
    return out


def run_k(args, service_url: str, source_url: str, log: Path, k: int) -> dict:
    client = httpx.Client(base_url=service_url, timeout=60)
    load_before = os.getloadavg()[0]
    ids, watchers = [], []
    for i in range(k):
        definition = {
            "url": f"{source_url}/cam{k}-{i}",
            "model": args.model,
            "stride_s": args.stride,
            "events": {"labels": [ACTION]},
        }
        response = client.post("/streams", json=definition)
        response.raise_for_status()
        ids.append(response.json()["id"])
        watchers.append(Watcher(service_url, ids[-1]))
        watchers[-1].start()
    # Every stream live and classifying (spawning K readers takes a while), then the warm-up.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(
        client.get(f"/streams/{s}").json()["stats"]["windows"] > 0 for s in ids
    ):
        time.sleep(0.5)
    time.sleep(args.warmup)
    before = {s: client.get(f"/streams/{s}").json()["stats"] for s in ids}
    batches_before = batch_totals(client)
    pids = [os.getpid(), *reader_pids()]
    cpu_before = sum(cpu_seconds(p) for p in pids)
    since = time.time()
    time.sleep(args.seconds)
    cpu = sum(cpu_seconds(p) for p in pids) - cpu_before
    after = {s: client.get(f"/streams/{s}").json() for s in ids}
    views, batches = (a - b for a, b in zip(batch_totals(client), batches_before, strict=True))
    starts = {}
    for line in log.read_text().splitlines():
        path, at = line.split()
        starts[path] = float(at)
    lat = []
    for i, watcher in enumerate(watchers):
        lat += latencies(watcher.arrivals, starts[f"/cam{k}-{i}"], since)
    dropped = sum(after[s]["stats"]["dropped_windows"] - before[s]["dropped_windows"] for s in ids)
    windows = sum(after[s]["stats"]["windows"] - before[s]["windows"] for s in ids)
    lags = [after[s]["stats"]["lag_s"] for s in ids if after[s]["stats"]["lag_s"] is not None]
    for stream_id in ids:
        client.delete(f"/streams/{stream_id}")
    lat.sort()
    dropped_frames = sum(
        after[s]["stats"]["dropped_frames"] - before[s]["dropped_frames"] for s in ids
    )
    expected = k * args.seconds / args.stride
    return {
        "streams": k,
        # Held: every window classified (within 10 % of what the stride asks for), none dropped.
        "held": not dropped and not dropped_frames and windows >= 0.9 * expected,
        "expected_windows": round(expected),
        "windows": windows,
        "dropped_windows": dropped,
        "dropped_frames": dropped_frames,
        "events": len(lat),
        "latency_p50_s": round(statistics.median(lat), 2) if lat else None,
        "latency_p95_s": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 2) if lat else None,
        "lag_s_max": max(lags) if lags else None,
        # N streams, one model pass per batch: views (windows) per inference batch.
        "views_per_batch": round(views / batches, 2) if batches else None,
        "cpu_per_stream": round(cpu / args.seconds / k, 3),  # cores per stream
        "load_before": round(load_before, 1),
        "load_after": round(os.getloadavg()[0], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=None, help="Model store (default: bundled).")
    parser.add_argument("--model", default=None)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--stride", type=float, default=0.5)
    parser.add_argument("--warmup", type=float, default=10.0, help="After every stream is live.")
    parser.add_argument("--seconds", type=float, default=24.0)
    parser.add_argument("--max-streams", type=int, default=16)
    parser.add_argument("--counts", default=None, help="Comma-separated K to run (no search).")
    parser.add_argument("--source", choices=["http", "rtsp"], default="http")
    parser.add_argument("--serve", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_source(*args.serve)
        return
    if args.source == "rtsp":
        sys.exit("--source rtsp: not implemented in this version; use --source http")

    from service.embedded import EmbeddedServer
    from service.settings import BUNDLED_STORE, Settings

    width, height = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        # Rendering 720p takes minutes on a busy box: kept between runs.
        video = Path(tempfile.gettempdir()) / f"actserve-streams-{args.size}.mp4"
        log = Path(tmp) / "starts.log"
        if not video.exists():
            make_video(video.with_suffix(".part.mp4"), (width, height))
            video.with_suffix(".part.mp4").rename(video)
        log.touch()
        source = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(video), str(log)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            source_url = f"http://127.0.0.1:{int(source.stdout.readline())}"
            settings = Settings(
                store=args.store or BUNDLED_STORE,
                streams_allowed=["127.0.0.0/8"],
                jobs_dir=Path(tmp) / "jobs",
                streams_max=args.max_streams,
            )
            counts = [int(c) for c in args.counts.split(",")] if args.counts else None
            with EmbeddedServer(settings) as server:
                results = []
                pending = list(counts or [1])
                while pending:
                    k = pending.pop(0)
                    result = run_k(args, server.url, source_url, log, k)
                    results.append(result)
                    print(json.dumps(result), flush=True)
                    if counts is None and result["held"] and 2 * k <= args.max_streams:
                        pending.append(2 * k)  # double until a window drops
            held = [r["streams"] for r in results if r["held"]]
            print(
                json.dumps(
                    {
                        "model": args.model or "default",
                        "size": args.size,
                        "most_streams_held": max(held) if held else 0,
                    }
                )
            )
        finally:
            source.kill()
            source.wait()


if __name__ == "__main__":
    main()
