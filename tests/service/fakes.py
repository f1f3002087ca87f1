"""A runtime that needs no model: each view's logits are its first K pixel values, so tests
can check that every view's result came back to the right request in the right order."""

from __future__ import annotations

import threading
import time

import numpy as np

from service.runtimes import Outputs


class FakeRuntime:
    description = "fake"

    def __init__(self, num_classes: int = 3, seconds_per_batch: float = 0.0) -> None:
        self.num_classes = num_classes
        self.seconds_per_batch = seconds_per_batch
        self.batch_sizes: list[int] = []
        self.threads: set[str] = set()
        self.closed = False

    def run(self, clips: np.ndarray) -> Outputs:
        self.threads.add(threading.current_thread().name)
        if np.isnan(clips).any():
            raise ValueError("NaN in the input")
        self.batch_sizes.append(len(clips))
        if self.seconds_per_batch:
            time.sleep(self.seconds_per_batch)
        flat = clips.reshape(len(clips), -1)
        return Outputs(flat[:, : self.num_classes].copy(), flat.mean(1, keepdims=True))

    def close(self) -> None:
        self.closed = True


def views(request: int, count: int, shape=(3, 2, 4, 4)) -> np.ndarray:
    """`count` views whose pixels all equal request*100 + view index."""
    values = request * 100 + np.arange(count, dtype=np.float32)
    return np.broadcast_to(values[:, None, None, None, None], (count, *shape)).copy()
