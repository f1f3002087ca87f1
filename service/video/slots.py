"""Fair hand-out of a fixed number of slots (decode workers) across clients.

A slot freed goes to the next client in turn, not to whoever asked first: a client with ten
requests waiting gets one slot, then every other waiting client gets one, then it gets its
next. Within a client, requests keep their order. Nobody waits while a slot is free.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["FairSlots"]


class FairSlots:
    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.slots = slots
        self.busy = 0
        self._waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()

    @property
    def waiting(self) -> int:
        return sum(len(queue) for queue in self._waiting.values())

    @asynccontextmanager
    async def turn(self, client: str) -> AsyncIterator[float]:
        """Hold a slot for the block; yields the seconds waited for it."""
        started = time.perf_counter()
        if self.busy < self.slots and not self._waiting:
            self.busy += 1
        else:
            future = asyncio.get_running_loop().create_future()
            self._waiting.setdefault(client, deque()).append(future)
            try:
                await future  # resolved by `_release`, which hands its slot over
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self._release()  # the slot arrived as we were cancelled: pass it on
                else:
                    self._forget(client, future)
                raise
        try:
            yield time.perf_counter() - started
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            client, queue = next(iter(self._waiting.items()))
            future = queue.popleft()
            if queue:
                self._waiting.move_to_end(client)  # its next request waits for its next turn
            else:
                del self._waiting[client]
            if not future.done():
                future.set_result(None)  # the slot changes hands; `busy` stays
                return
        self.busy -= 1

    def _forget(self, client: str, future: asyncio.Future[None]) -> None:
        queue = self._waiting.get(client)
        if queue is not None and future in queue:
            queue.remove(future)
            if not queue:
                del self._waiting[client]
