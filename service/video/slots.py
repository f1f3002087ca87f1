"""Fair hand-out of a fixed number of slots (decode workers) across clients.

A slot freed goes to the next client in turn, not to whoever asked first: a client with ten
requests waiting gets one slot, then every other waiting client gets one, then it gets its
next. Within a client, requests keep their order. Nobody waits while a slot is free.

Background work (durable jobs, `service.jobs`) takes a turn with `background=True`: it gets a
slot when no foreground request is waiting, and holds at most `background_slots` at once, so
interactive requests keep their priority and the rest of the slots. So that a steady stream of
requests cannot starve it, background work that has waited `background_max_wait_s` takes the
next slot freed, within its share.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["FairSlots"]


class FairSlots:
    def __init__(
        self,
        slots: int,
        background_slots: int | None = None,
        background_max_wait_s: float = 5.0,
    ) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.slots = slots
        self.background_slots = slots if background_slots is None else background_slots
        self.busy = 0
        self.background_busy = 0
        self.background_max_wait_s = background_max_wait_s
        self._waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()
        self._background: deque[asyncio.Future[None]] = deque()
        self._background_since: dict[asyncio.Future[None], float] = {}

    @property
    def waiting(self) -> int:
        """Foreground requests waiting for a slot (background work waits apart)."""
        return sum(len(queue) for queue in self._waiting.values())

    @property
    def background_waiting(self) -> int:
        return sum(not future.done() for future in self._background)

    @asynccontextmanager
    async def turn(self, client: str, *, background: bool = False) -> AsyncIterator[float]:
        """Hold a slot for the block; yields the seconds waited for it. A `background` turn
        comes only when no foreground request waits, within `background_slots`."""
        if background:
            async with self._background_turn() as waited:
                yield waited
            return
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

    @asynccontextmanager
    async def _background_turn(self) -> AsyncIterator[float]:
        started = time.perf_counter()
        if not self._background and self._free_for_background():
            self.busy += 1
            self.background_busy += 1
        else:
            future = asyncio.get_running_loop().create_future()
            self._background.append(future)
            self._background_since[future] = started
            try:
                await future  # resolved by `_wake_background` or `_release`, which count it
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self.background_busy -= 1
                    self._release()
                elif future in self._background:
                    self._background.remove(future)
                raise
            finally:
                self._background_since.pop(future, None)
        try:
            yield time.perf_counter() - started
        finally:
            self.background_busy -= 1
            self._release()

    def _free_for_background(self) -> bool:
        return (
            self.busy < self.slots
            and not self._waiting
            and self.background_busy < self.background_slots
        )

    def _wake_background(self) -> None:
        while self._background and self._free_for_background():
            future = self._background.popleft()
            if not future.done():
                self.busy += 1
                self.background_busy += 1
                future.set_result(None)

    def _overdue_background(self) -> asyncio.Future[None] | None:
        """The oldest background waiter, if it has waited `background_max_wait_s` and the
        background share has room."""
        while self._background and self._background[0].done():
            self._background.popleft()
        if not self._background or self.background_busy >= self.background_slots:
            return None
        first = self._background[0]
        waited = time.perf_counter() - self._background_since.get(first, time.perf_counter())
        return first if waited >= self.background_max_wait_s else None

    def _release(self) -> None:
        if self._waiting and (overdue := self._overdue_background()) is not None:
            self._background.popleft()
            self.background_busy += 1
            overdue.set_result(None)  # the slot changes hands; `busy` stays
            return
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
        self._wake_background()

    def _forget(self, client: str, future: asyncio.Future[None]) -> None:
        queue = self._waiting.get(client)
        if queue is not None and future in queue:
            queue.remove(future)
            if not queue:
                del self._waiting[client]
        self._wake_background()  # it may have been the last foreground waiter
