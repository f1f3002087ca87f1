"""Slow clients against `actserve serve`, with the HTTP guards and without: what they hold.

    python benchmarks/slowloris.py                    # 1,000 stalled clients, each mode
    python benchmarks/slowloris.py --clients 300 --wait 8

For each mode a fresh `actserve serve` (the bundled store) runs in a subprocess; `--clients`
connections then stall: half send half a request head, half send the head of an upload and
64 KiB of a body that declares 10 MB. Printed per mode, side by side: the server process's
open file descriptors and spooled upload files before, right after the clients stalled, and
`--wait` seconds later, and whether a normal request still gets through meanwhile. "guarded"
is the service's defaults shortened to 2 s timeouts; "unguarded" sets the timeouts to a day
and lifts the connection limit, which is what uvicorn alone does.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

MODES = {
    "guarded": ["header_timeout_s=2", "body_idle_timeout_s=2", "limit_concurrency=100000"],
    "unguarded": [
        "header_timeout_s=86400",
        "body_idle_timeout_s=86400",
        "limit_concurrency=100000",
    ],
}
HEAD = b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: video/mp4\r\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--wait", type=float, default=5.0)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    rows = [run(mode, settings, args) for mode, settings in MODES.items()]
    print(f"\n{args.clients} stalled clients; fds and spooled files of the server process")
    print(f"{'mode':10s} {'fds before':>10s} {'stalled':>8s} {f'+{args.wait:g} s':>8s} "
          f"{'files':>6s} {f'+{args.wait:g} s':>6s} {'healthz while stalled':>22s}")  # fmt: skip
    for mode, before, stalled, after, files, files_after, healthy in rows:
        print(f"{mode:10s} {before:10d} {stalled:8d} {after:8d} {files:6d} {files_after:6d} "
              f"{'ok' if healthy else 'FAILED':>22s}")  # fmt: skip


def run(mode: str, settings: list[str], args: argparse.Namespace) -> tuple:
    spool = Path(tempfile.mkdtemp(prefix="slowloris-"))
    command = [sys.executable, "-m", "actserve", "serve", "--port", str(args.port),
               "--log-level", "error", "--set", f"upload_dir={spool}"]  # fmt: skip
    for setting in settings:
        command += ["--set", setting]
    server = subprocess.Popen(command)
    url = f"http://127.0.0.1:{args.port}"
    try:
        _wait_ready(url)
        before = _fds(server.pid)
        clients = []
        for number in range(args.clients):
            conn = socket.create_connection(("127.0.0.1", args.port))
            if number % 2:
                conn.sendall(HEAD + b"Content-Length: 10000000\r\n\r\n" + b"\0" * 65536)
            else:
                conn.sendall(HEAD[:40])
            clients.append(conn)
        time.sleep(0.5)
        stalled, files = _fds(server.pid), len(list(spool.iterdir()))
        healthy = httpx.get(f"{url}/healthz", timeout=30).status_code == 200
        time.sleep(args.wait)
        after, files_after = _fds(server.pid), len(list(spool.iterdir()))
        for conn in clients:
            conn.close()
        return mode, before, stalled, after, files, files_after, healthy
    finally:
        server.terminate()
        server.wait(timeout=120)


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError("the server did not become ready")


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


if __name__ == "__main__":
    main()
