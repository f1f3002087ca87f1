"""A live MPEG-TS stream over HTTP on loopback, encoded by the FFmpeg inside PyAV: the demo's
synthetic motions, one after another, paced in real time (or N times faster).

    python -m tests.service.streams.ts_server --actions "standing still,rotating clockwise"

prints `PORT <n>` once it listens on 127.0.0.1 and serves every GET until killed. Each
connection starts the sequence from the beginning. `--drop-after S` closes each connection
after S seconds of stream (a camera that drops out and comes back), `--speed 4` sends four
seconds of stream a second (a source faster than real time), `--corrupt` sends random bytes
instead of a stream.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import av
import numpy as np

from actserve.demo.synthetic import FPS, render_sequence


def serve_stream(out, args: argparse.Namespace) -> None:
    container = av.open(out, "w", format="mpegts")
    stream = container.add_stream("libx264", rate=FPS)
    stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
    stream.options = {"preset": "ultrafast", "tune": "zerolatency", "g": "12", "crf": "20"}
    actions = args.actions.split(",")
    started = time.monotonic()
    try:
        for i, frame in enumerate(_forever(actions, args.seconds_each)):
            due = started + i / FPS
            if args.drop_after and due - started > args.drop_after:
                return
            due = started + (due - started) / args.speed
            if due > time.monotonic():
                time.sleep(due - time.monotonic())
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = i
            container.mux(stream.encode(video_frame))
            out.flush()
    finally:
        with contextlib.suppress(Exception):
            container.close()


def _forever(actions: list[str], seconds_each: float):
    for seed in itertools.count():
        yield from render_sequence(actions, seconds_each=seconds_each, seed=seed)


def serve_garbage(out, args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    while True:
        out.write(rng.integers(0, 256, 188 * 40, dtype=np.uint8).tobytes())
        out.flush()
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--actions", default="standing still,rotating clockwise")
    parser.add_argument("--seconds-each", type=float, default=4.0)
    parser.add_argument("--drop-after", type=float, default=0.0)
    parser.add_argument("--speed", type=float, default=1.0, help="times real time")
    parser.add_argument("--corrupt", action="store_true")
    args = parser.parse_args()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.end_headers()
            with contextlib.suppress(OSError, av.error.FFmpegError):  # the client left
                (serve_garbage if args.corrupt else serve_stream)(self.wfile, args)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        sys.stdout.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
