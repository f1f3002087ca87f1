"""Live sources on loopback for the stream tests: an MPEG-TS over HTTP server in a
subprocess (ts_server.py, FFmpeg from PyAV) and a socket that never answers."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[3]


class TsServer:
    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.service.streams.ts_server", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready, _, _ = select.select([self.process.stdout], [], [], 60)
        if not ready:
            self.stop()
            raise TimeoutError("the test stream server did not start in 60 s")
        line = self.process.stdout.readline()
        self.url = f"http://127.0.0.1:{int(line.split()[1])}/live.ts"

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)
        if self.process.stdout:
            self.process.stdout.close()


@pytest.fixture
def ts_server() -> Iterator[Callable[..., TsServer]]:
    """Start stream servers (`ts_server("--fast")`); all are killed after the test."""
    started: list[TsServer] = []

    def start(*args: str) -> TsServer:
        started.append(TsServer(*args))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A TCP port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/live.ts"


def wait_for(
    client: httpx.Client, stream_id: str, check: Callable[[dict], bool], timeout: float = 60
) -> dict:
    """Poll GET /streams/{id} until `check` holds (every answer must be a 200)."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/streams/{stream_id}")
        assert response.status_code == 200, response.text
        stream = response.json()
        if check(stream):
            return stream
        if time.monotonic() > deadline:
            raise AssertionError(f"stream never got there: {stream}")
        time.sleep(0.25)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))
