"""Test-only jobs for the decode pool: they hang, crash or eat memory on purpose.

They live in a module (not a test file) so spawned workers can import them by name.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import time

import numpy as np


def sleep_forever(pid_file: str | None = None) -> None:
    if pid_file:
        with open(pid_file, "w") as file:
            file.write(str(os.getpid()))
    time.sleep(3600)


def sleep_through_sigterm() -> None:
    """Hang like a decoder stuck in C code: deaf to the polite SIGTERM."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    time.sleep(3600)


def kill_self(signum: int) -> None:
    os.kill(os.getpid(), signum)


def exit_abruptly(code: int) -> None:
    os._exit(code)


def allocate(num_bytes: int) -> int:
    return int(np.ones(num_bytes, dtype=np.uint8).sum())


def worker_pid() -> int:
    return os.getpid()


def address_space_limit() -> tuple[int, int]:
    return resource.getrlimit(resource.RLIMIT_AS)


def address_space_now() -> int:
    """VmSize of this worker, in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def loaded(modules: tuple[str, ...]) -> list[str]:
    return sorted(name for name in modules if name in sys.modules)


def crash_once(marker: str) -> str:
    """Die the first time (as a worker killed from outside would), succeed after."""
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        os.kill(os.getpid(), signal.SIGKILL)
    return "done"


def sleep_then(seconds: float, label: str) -> tuple[str, float]:
    time.sleep(seconds)
    return label, time.monotonic()
