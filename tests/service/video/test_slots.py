"""Fair hand-out of decode workers: clients take turns, nobody waits while a slot is free,
and a request that gives up neither keeps nor loses a slot."""

from __future__ import annotations

import asyncio

import pytest

from service.video.slots import FairSlots


async def _holder(slots: FairSlots, client: str, order: list[str], release: asyncio.Event) -> None:
    async with slots.turn(client):
        order.append(client)
        await release.wait()


def test_a_freed_slot_goes_to_the_next_client_in_turn() -> None:
    async def scenario() -> list[str]:
        slots, order, go = FairSlots(1), [], asyncio.Event()
        names = ["a", "a", "a", "a", "b", "c", "b"]
        tasks = []
        for name in names:
            tasks.append(asyncio.create_task(_holder(slots, name, order, go)))
            await asyncio.sleep(0)
        assert slots.busy == 1 and slots.waiting == len(names) - 1
        go.set()
        await asyncio.gather(*tasks)
        assert slots.busy == 0 and slots.waiting == 0
        return order

    # a holds the slot; then a, b, c take turns, b's second after everyone's first
    assert asyncio.run(scenario()) == ["a", "a", "b", "c", "a", "b", "a"]


def test_nobody_waits_while_a_slot_is_free() -> None:
    async def scenario() -> None:
        slots = FairSlots(3)
        async with slots.turn("a") as waited_a, slots.turn("a") as waited_b:
            assert waited_a < 0.01 and waited_b < 0.01 and slots.busy == 2
        assert slots.busy == 0

    asyncio.run(scenario())


@pytest.mark.parametrize("cancel_after_handover", [False, True])
def test_a_waiter_that_gives_up_keeps_no_slot(cancel_after_handover: bool) -> None:
    async def scenario() -> None:
        slots, order, go = FairSlots(1), [], asyncio.Event()
        first = asyncio.create_task(_holder(slots, "a", order, go))
        await asyncio.sleep(0)
        quitter = asyncio.create_task(_holder(slots, "b", order, asyncio.Event()))
        last = asyncio.create_task(_holder(slots, "c", order, go))
        await asyncio.sleep(0)
        if cancel_after_handover:
            go.set()
            await asyncio.sleep(0)  # a ends and hands its slot to b, which has not run yet
            assert first.done() and not quitter.done()
        quitter.cancel()
        go.set()
        await asyncio.gather(first, last)
        assert quitter.cancelled()
        assert order == ["a", "c"] and slots.busy == 0 and slots.waiting == 0

    asyncio.run(scenario())


def test_background_turns_come_after_waiting_requests_and_within_their_share() -> None:
    async def scenario() -> None:
        slots = FairSlots(2, background_slots=1)
        order: list[str] = []
        release = {name: asyncio.Event() for name in ("j1", "j2", "r1", "r2", "r3")}

        async def hold(name: str, background: bool) -> None:
            async with slots.turn(name, background=background):
                order.append(name)
                await release[name].wait()

        tasks = [asyncio.create_task(hold("j1", True))]
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(hold("j2", True)))  # over the share: waits
        await asyncio.sleep(0)
        assert order == ["j1"] and slots.busy == 1 and slots.background_waiting == 1
        tasks += [asyncio.create_task(hold(n, False)) for n in ("r1", "r2", "r3")]
        await asyncio.sleep(0)
        assert order == ["j1", "r1"] and slots.waiting == 2  # r2, r3 wait; j2 apart
        release["j1"].set()
        await asyncio.sleep(0.01)
        assert order == ["j1", "r1", "r2"]  # the freed slot went to a request, not to j2
        release["r1"].set()
        await asyncio.sleep(0.01)
        assert order[-1] == "r3"
        release["r2"].set()
        await asyncio.sleep(0.01)
        assert order[-1] == "j2"  # no request waits: background work gets its turn
        assert slots.background_busy == 1
        for event in release.values():
            event.set()
        await asyncio.gather(*tasks)
        assert slots.busy == slots.background_busy == 0

    asyncio.run(scenario())


def test_a_cancelled_background_wait_leaves_the_counts_straight() -> None:
    async def scenario() -> None:
        slots = FairSlots(1, background_slots=1)

        async def job() -> None:
            async with slots.turn("j", background=True):
                pass

        async with slots.turn("r"):
            waiting = asyncio.create_task(job())
            await asyncio.sleep(0)
            assert slots.background_waiting == 1
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
        assert slots.busy == 0 and slots.background_waiting == 0
        async with slots.turn("j", background=True):
            assert slots.busy == 1 and slots.background_busy == 1

    asyncio.run(scenario())


def test_background_work_waiting_too_long_takes_the_next_freed_slot() -> None:
    async def scenario() -> list[str]:
        slots = FairSlots(1, background_slots=1, background_max_wait_s=0.05)
        order: list[str] = []
        go = asyncio.Event()

        async def hold(name: str, background: bool = False) -> None:
            async with slots.turn(name, background=background):
                order.append(name)
                await go.wait()

        first = asyncio.create_task(hold("r1"))
        await asyncio.sleep(0)
        job = asyncio.create_task(hold("job", background=True))
        await asyncio.sleep(0.06)  # the job is overdue
        second = asyncio.create_task(hold("r2"))
        await asyncio.sleep(0)
        go.set()
        await asyncio.gather(first, job, second)
        return order

    assert asyncio.run(scenario()) == ["r1", "job", "r2"]
