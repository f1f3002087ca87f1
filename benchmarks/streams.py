"""Live streams: how many real-time streams one box holds, and how fast events arrive.

    python benchmarks/streams.py --install          # the demo model at 720p, K = 1, 2, 4, ...
    python benchmarks/streams.py --store STORE --model x3d_s --rules 1:2 --counts 1,2
    python benchmarks/streams.py --size 320x240 --counts 2 --rules 0.5:2,0.25:2,0.5:1

A synthetic H.264 video (the demo's motions: `standing still` for 6.125 s, then `rotating
clockwise` for 6 s: the action's onset is at 6.125 s of every 12.125 s loop; a keyframe every
second, no B-frames, as cameras send) is served in a loop at real time, K times at once, and K
streams are added to a service on 127.0.0.1. For each K the run warms up, then measures for
`--seconds`: windows classified and dropped, the latency from each onset in the video to the
`start` SSE event of `rotating clockwise` and its parts, and the CPU seconds the service
process and its stream readers spent, per stream and second of video. K doubles until the
streams no longer hold: a window or frame dropped, or fewer windows than the stride asks for
(readers behind real time); the last K that held is the answer. `--rules STRIDE:WINDOWS,...`
runs each stride and `events.windows` in turn at every K (the latency's levers, side by side).

Sources:
- `--source rtsp` (default): FFmpeg publishes each stream (`ffmpeg -re -stream_loop -1 -c
  copy`, MPEG-TS on a loopback UDP port) into GStreamer's RTSP server (`rtsp_server.py`, under
  the system's python3), one mount per stream, which the service reads as RTSP over TCP, as it
  would a camera. Needs Debian's `ffmpeg python3-gi gir1.2-gst-rtsp-server-1.0
  gstreamer1.0-plugins-good gstreamer1.0-plugins-bad`; `--install` installs them with apt-get.
- `--source http` (nothing to install) remuxes the file packet by packet as MPEG-TS over HTTP,
  paced at real time like `ffmpeg -re` (a PyAV subprocess: no re-encoding).

The box is reported (`os.getloadavg()`) before and after each K: on a shared machine the
figures are only comparable within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

# The action starts this far into each loop. A loop that is no whole number of strides (0.5 s
# by default) meets the window grid at another phase each time: 4 phases, 0.125 s apart.
ONSET_S = 6.125
LOOP_S = 12.125
ACTION = "rotating clockwise"
#: What `--source rtsp` runs: Debian's FFmpeg and GStreamer's RTSP server under the system's
#: python3 (its python3-gi).
RTSP_PACKAGES = (
    "ffmpeg",
    "python3-gi",
    "gir1.2-gst-rtsp-server-1.0",
    "gstreamer1.0-plugins-good",
    "gstreamer1.0-plugins-bad",
)
SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SERVER = Path(__file__).with_name("rtsp_server.py")


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
    """`standing still` for ONSET_S, then ACTION, one scene each, encoded as a camera sends
    H.264: a keyframe every second, no B-frames (a player joining a live stream waits for a
    keyframe)."""
    from actserve.demo.synthetic import FPS, render_sequence, write_video

    width, height = size
    frames = itertools.chain(
        render_sequence(
            ["standing still"], seconds_each=ONSET_S, seed=3, height=height, width=width
        ),
        # At the pace the demo learnt: a 2 s motion, again and again.
        render_sequence(
            [ACTION], seconds_each=LOOP_S - ONSET_S, seed=3, height=height, width=width, motion_s=2
        ),
    )
    write_video(frames, str(path), options={"g": str(FPS), "bf": "0"})


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc); 0 for one that is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric_sums(client: httpx.Client, *names: str) -> list[float]:
    """Each named sample of /metrics, summed over its labels."""
    totals = dict.fromkeys(names, 0.0)
    for line in client.get("/metrics").text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in totals:
            totals[name] += float(line.rsplit(" ", 1)[1])
    return [totals[name] for name in names]


def reader_pids() -> list[int]:
    import multiprocessing

    return [p.pid for p in multiprocessing.active_children() if p.name.startswith("stream-")]


# --------------------------------------------------------------------------- sources


class HttpSource:
    """The file remuxed as MPEG-TS over HTTP by a PyAV subprocess; each connection gets the
    video from its start, paced at real time from the moment it connects."""

    def __init__(self, video: Path, tmp: Path) -> None:
        self.log = tmp / "starts.log"
        self.log.touch()
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(video), str(self.log)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url = f"http://127.0.0.1:{int(self.process.stdout.readline())}"

    def open(self, k: int) -> list[str]:
        return [f"{self.url}/cam{k}-{i}" for i in range(k)]

    def started(self, k: int, i: int) -> float:
        """When stream i's video began (wall clock): its first connection in this round."""
        for line in self.log.read_text().splitlines():
            path, at = line.split()
            if path == f"/cam{k}-{i}":
                return float(at)
        raise LookupError(f"stream {i} never connected")

    def pids(self) -> list[int]:
        return [self.process.pid]

    def end_round(self) -> None:
        pass

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


class Publisher(threading.Thread):
    """`ffmpeg -re -stream_loop -1` copying the file's packets as MPEG-TS to a loopback UDP
    port (the RTSP server's ingest). `t0`: when its video began, the least of wall clock −
    output time over its progress reports (each comes a little after the time it reports)."""

    def __init__(self, video: Path, port: int) -> None:
        super().__init__(daemon=True)
        self.t0 = math.inf
        self.ready = threading.Event()
        self.process = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-nostats", "-loglevel", "error", "-progress", "pipe:1",
             "-re", "-stream_loop", "-1", "-i", str(video), "-map", "0:v", "-c", "copy",
             # No mux delay and a flush per packet: a frame leaves as soon as it is due.
             "-f", "mpegts", "-muxdelay", "0", "-flush_packets", "1",
             f"udp://127.0.0.1:{port}?pkt_size=1316"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.start()

    def run(self) -> None:
        for line in self.process.stdout:
            key, _, value = line.strip().partition("=")
            if key == "out_time_us" and value.isdigit() and int(value) > 0:
                self.t0 = min(self.t0, time.time() - int(value) / 1e6)
                self.ready.set()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rtsp_missing() -> str | None:
    """What `--source rtsp` lacks on this machine, or None."""
    if shutil.which("ffmpeg") is None:
        return "ffmpeg"
    try:
        check = subprocess.run(
            [SYSTEM_PYTHON, str(RTSP_SERVER), "--check"], capture_output=True, text=True
        )
    except FileNotFoundError:
        return SYSTEM_PYTHON
    return (check.stderr.strip() or "GStreamer's RTSP server") if check.returncode else None


def require_rtsp(install: bool) -> None:
    missing = rtsp_missing()
    if missing and install:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", *RTSP_PACKAGES], check=True, env=env)
        missing = rtsp_missing()
    if missing:
        sys.exit(
            f"--source rtsp: missing {missing}. Install the system's packages with\n"
            f"    apt-get install {' '.join(RTSP_PACKAGES)}\n"
            "or run again with --install (as root)."
        )


class RtspSource:
    """For each K, GStreamer's RTSP server with K mounts and K FFmpeg publishers, one per
    mount, started afresh; the service reads rtsp://127.0.0.1:PORT/camI over TCP."""

    def __init__(self, video: Path) -> None:
        self.video = video
        self.server: subprocess.Popen[str] | None = None
        self.publishers: list[Publisher] = []

    def open(self, k: int) -> list[str]:
        ports = [free_udp_port() for _ in range(k)]
        mounts = [f"cam{i}={port}" for i, port in enumerate(ports)]
        self.server = subprocess.Popen(
            [SYSTEM_PYTHON, str(RTSP_SERVER), *mounts], stdout=subprocess.PIPE, text=True
        )
        rtsp_port = int(self.server.stdout.readline())
        self.publishers = [Publisher(self.video, port) for port in ports]
        for publisher in self.publishers:
            if not publisher.ready.wait(30):
                raise RuntimeError("ffmpeg did not start publishing within 30 s")
        return [f"rtsp://127.0.0.1:{rtsp_port}/cam{i}" for i in range(k)]

    def started(self, k: int, i: int) -> float:
        return self.publishers[i].t0

    def pids(self) -> list[int]:
        server = [self.server.pid] if self.server else []
        return server + [p.process.pid for p in self.publishers]

    def end_round(self) -> None:
        for process in [p.process for p in self.publishers] + [self.server]:
            if process is not None:
                process.terminate()
        for process in [p.process for p in self.publishers] + [self.server]:
            if process is not None:
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.publishers, self.server = [], None

    def close(self) -> None:
        self.end_round()


# --------------------------------------------------------------------------- one K


class Watcher(threading.Thread):
    """Reads a stream's SSE and records each start of ACTION: (arrival, the service's
    `emitted_at`, its `start_time`: when the first window at or above `high` began), all wall
    clock."""

    def __init__(self, url: str, stream_id: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stream_id = url, stream_id
        self.arrivals: list[tuple[float, float, float]] = []

    def run(self) -> None:
        try:
            with httpx.stream(
                "GET", f"{self.url}/streams/{self.stream_id}/events", timeout=None
            ) as r:
                for line in r.iter_lines():
                    if line.startswith("data:"):
                        arrival = time.time()
                        event = json.loads(line[5:])
                        if event["type"] == "start" and event["label"] == ACTION:
                            emitted, began = (
                                datetime.fromisoformat(event[key]).timestamp()
                                for key in ("emitted_at", "start_time")
                            )
                            self.arrivals.append((arrival, emitted, began))
        except httpx.HTTPError:
            pass


def latencies(
    arrivals: list[tuple[float, float, float]], started: float, since: float
) -> list[tuple[float, float]]:
    """For each onset after `since`, its first start event: (arrival − onset, its first
    window's start − onset). A start again within the same action, after a flicker, is no
    onset's."""
    first: dict[float, tuple[float, float]] = {}
    for arrival, _, began in arrivals:
        loops = (arrival - started - ONSET_S) // LOOP_S
        onset = started + ONSET_S + loops * LOOP_S
        if onset >= since:
            first.setdefault(loops, (arrival - onset, began - onset))
    return list(first.values())


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 2)


def run_k(
    args: argparse.Namespace, service_url: str, source, k: int, stride: float, rule: int
) -> dict:
    client = httpx.Client(base_url=service_url, timeout=60)
    load_before = os.getloadavg()[0]
    urls = source.open(k)
    ids, watchers = [], []
    for url in urls:
        definition = {
            "url": url,
            "model": args.model,
            "stride_s": stride,
            "events": {"windows": rule}
            | ({"labels": [ACTION]} if args.model in (None, "demo-actions") else {}),
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
    counters = (
        "actserve_batch_size_views_sum",
        "actserve_batch_size_views_count",
        "actserve_stream_lag_seconds_sum",
        "actserve_stream_lag_seconds_count",
    )
    before = {s: client.get(f"/streams/{s}").json()["stats"] for s in ids}
    sums_before = metric_sums(client, *counters)
    pids, source_pids = [os.getpid(), *reader_pids()], source.pids()
    cpu_before = sum(cpu_seconds(p) for p in pids)
    source_cpu_before = sum(cpu_seconds(p) for p in source_pids)
    since = time.time()
    time.sleep(args.seconds)
    cpu = sum(cpu_seconds(p) for p in pids) - cpu_before
    source_cpu = sum(cpu_seconds(p) for p in source_pids) - source_cpu_before
    after = {s: client.get(f"/streams/{s}").json() for s in ids}
    views, batches, lag_sum, lag_count = (
        a - b for a, b in zip(metric_sums(client, *counters), sums_before, strict=True)
    )
    lat, began, sse = [], [], []
    for i, watcher in enumerate(watchers):
        arrivals = list(watcher.arrivals)
        for latency, start in latencies(arrivals, source.started(k, i), since):
            lat.append(latency)
            began.append(start)
        sse += [a - e for a, e, _ in arrivals if a >= since]
    for stream_id in ids:
        client.delete(f"/streams/{stream_id}")
    source.end_round()
    dropped = sum(after[s]["stats"]["dropped_windows"] - before[s]["dropped_windows"] for s in ids)
    windows = sum(after[s]["stats"]["windows"] - before[s]["windows"] for s in ids)
    lags = [after[s]["stats"]["lag_s"] for s in ids if after[s]["stats"]["lag_s"] is not None]
    dropped_frames = sum(
        after[s]["stats"]["dropped_frames"] - before[s]["dropped_frames"] for s in ids
    )
    expected = k * args.seconds / stride
    return {
        "streams": k,
        "stride_s": stride,
        "rule_windows": rule,
        # Held: every window classified (within 10 % of what the stride asks for), none dropped.
        "held": not dropped and not dropped_frames and windows >= 0.9 * expected,
        "expected_windows": round(expected),
        "windows": windows,
        "dropped_windows": dropped,
        "dropped_frames": dropped_frames,
        "onsets": len(lat),
        "starts": len(sse),
        "latency_p50_s": quantile(lat, 0.5),
        "latency_p95_s": quantile(lat, 0.95),
        # Its parts: where the first window at or above `high` began (from the onset: < 0,
        # it held some of the still scene), a window's last frame in → its probabilities out
        # (reading late, the model's queue and run), the event's way out (emitted → SSE read).
        "first_window_s_p50": quantile(began, 0.5),
        "window_lag_s_mean": round(lag_sum / lag_count, 3) if lag_count else None,
        "sse_s_p50": quantile(sse, 0.5),
        "lag_s_max": max(lags) if lags else None,
        # N streams, one model pass per batch: views (windows) per inference batch.
        "views_per_batch": round(views / batches, 2) if batches else None,
        "cpu_per_stream": round(cpu / args.seconds / k, 3),  # cores per stream
        "source_cpu_per_stream": round(source_cpu / args.seconds / k, 3),  # publisher, server
        "load_before": round(load_before, 1),
        "load_after": round(os.getloadavg()[0], 1),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=None, help="Model store (default: bundled).")
    parser.add_argument("--model", default=None, help="Default: the store's default model.")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument(
        "--rules",
        default="0.5:2",
        help="Comma-separated STRIDE_S:WINDOWS (a start after WINDOWS windows at or above high), "
        "each run in turn at every K, e.g. 0.5:2,0.25:2,0.5:1.",
    )
    parser.add_argument("--warmup", type=float, default=10.0, help="After every stream is live.")
    parser.add_argument("--seconds", type=float, default=24.0)
    parser.add_argument("--max-streams", type=int, default=16)
    parser.add_argument("--counts", default=None, help="Comma-separated K to run (no search).")
    parser.add_argument("--source", choices=["rtsp", "http"], default="rtsp")
    parser.add_argument(
        "--install", action="store_true", help="apt-get install what --source rtsp needs."
    )
    parser.add_argument("--serve", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve_source(*args.serve)
        return []
    if args.source == "rtsp":
        require_rtsp(args.install)

    from service.embedded import EmbeddedServer
    from service.settings import BUNDLED_STORE, Settings

    width, height = map(int, args.size.split("x"))
    # Rendering 720p takes minutes on a busy box: kept between runs.
    video = Path(tempfile.gettempdir()) / f"actserve-streams-{args.size}-v5.mp4"
    if not video.exists():
        make_video(video.with_suffix(".part.mp4"), (width, height))
        video.with_suffix(".part.mp4").rename(video)
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        source = HttpSource(video, Path(tmp)) if args.source == "http" else RtspSource(video)
        try:
            settings = Settings(
                store=args.store or BUNDLED_STORE,
                default_model=args.model,
                streams_allowed=["127.0.0.0/8"],
                jobs_dir=Path(tmp) / "jobs",
                streams_max=args.max_streams,
            )
            counts = [int(c) for c in args.counts.split(",")] if args.counts else None
            with EmbeddedServer(settings) as server:
                pending = list(counts or [1])
                while pending:
                    k = pending.pop(0)
                    for rule in args.rules.split(","):
                        stride, windows = rule.split(":")
                        results.append(
                            run_k(args, server.url, source, k, float(stride), int(windows))
                        )
                        print(json.dumps(results[-1]), flush=True)
                    if counts is None and results[-1]["held"] and 2 * k <= args.max_streams:
                        pending.append(2 * k)  # double until a window drops
        finally:
            source.close()
    held = [r["streams"] for r in results if r["held"]]
    summary = {
        "model": args.model or "default",
        "source": args.source,
        "size": args.size,
        "most_streams_held": max(held) if held else 0,
    }
    print(json.dumps(summary))
    return results


if __name__ == "__main__":
    main()
