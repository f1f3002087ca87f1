"""The view-level batcher: batches across requests, reassembly, Triton's delay semantics,
admission control, deadlines, cancellation and failure isolation."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from service.batching import Batcher, BatchingSettings, BatchObserver
from service.errors import DeadlineExceeded, InferenceFailed, NotReady, Overloaded
from tests.service.fakes import FakeRuntime, views


def run(coro):
    return asyncio.run(coro)


def deadline(seconds: float = 10.0) -> float:
    return asyncio.get_running_loop().time() + seconds


def test_views_of_several_requests_share_batches_and_come_back_in_order() -> None:
    async def scenario():
        runtime = FakeRuntime(seconds_per_batch=0.05)
        batcher = Batcher(runtime, BatchingSettings(max_batch_views=8, max_delay_ms=20))
        batcher.start()
        counts = [5, 4, 7, 1, 5]
        results = await asyncio.gather(
            *(batcher.submit(views(r, n), deadline=deadline()) for r, n in enumerate(counts))
        )
        await batcher.close()
        return runtime, counts, results

    runtime, counts, results = run(scenario())
    assert sum(runtime.batch_sizes) == sum(counts) == 22
    assert max(runtime.batch_sizes) == 8 and len(runtime.batch_sizes) == 3  # 8 + 8 + 6
    for request, (count, out) in enumerate(zip(counts, results, strict=True)):
        expected = request * 100 + np.arange(count)
        assert out.logits.shape == (count, 3)
        np.testing.assert_array_equal(out.logits[:, 0], expected)
        np.testing.assert_array_equal(out.embedding[:, 0], expected)
    # Batches: 5 + 3 of the 4-view request | its last 1 + 7 | 1 + 5: only it spans two.
    assert [r.batches for r in results] == [1, 2, 1, 1, 1]
    assert runtime.threads == {"infer-model_0"}  # one inference thread, never the event loop


def test_delay_counts_from_the_oldest_waiting_view() -> None:
    """A second request arriving late does not restart the first one's wait."""

    async def scenario():
        runtime = FakeRuntime()
        batcher = Batcher(runtime, BatchingSettings(max_batch_views=64, max_delay_ms=300))
        batcher.start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        first = asyncio.create_task(batcher.submit(views(0, 2), deadline=deadline()))
        await asyncio.sleep(0.2)
        second = asyncio.create_task(batcher.submit(views(1, 2), deadline=deadline()))
        await asyncio.gather(first, second)
        elapsed = loop.time() - started
        await batcher.close()
        return runtime, elapsed

    runtime, elapsed = run(scenario())
    assert runtime.batch_sizes == [4]  # both requests in one batch
    assert elapsed < 0.45  # ~0.3 s from the first view, not 0.2 + 0.3 from the second


def test_a_full_batch_leaves_without_waiting_for_the_delay() -> None:
    async def scenario():
        batcher = Batcher(FakeRuntime(), BatchingSettings(max_batch_views=4, max_delay_ms=5000))
        batcher.start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        await batcher.submit(views(0, 4), deadline=deadline())
        elapsed = loop.time() - started
        await batcher.close()
        return elapsed

    assert run(scenario()) < 1.0


def test_queue_bound_refuses_with_retry_after() -> None:
    async def scenario():
        runtime = FakeRuntime(seconds_per_batch=0.3)
        batcher = Batcher(
            runtime, BatchingSettings(max_batch_views=4, max_delay_ms=0, max_queue_views=8)
        )
        batcher.start()
        first = asyncio.create_task(batcher.submit(views(0, 4), deadline=deadline()))
        await asyncio.sleep(0.05)  # the first batch is running
        queued = [
            asyncio.create_task(batcher.submit(views(r, 4), deadline=deadline())) for r in (1, 2)
        ]
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(views(3, 4), deadline=deadline())
        await asyncio.gather(first, *queued)
        await batcher.close()
        return refused.value

    refused = run(scenario())
    assert refused.retry_after >= 1 and "8 views are waiting (limit 8)" in str(refused)


def test_deadline_drops_the_queued_views() -> None:
    async def scenario():
        runtime, depths = FakeRuntime(seconds_per_batch=0.4), []
        observer = BatchObserver(on_queue_depth=depths.append)
        settings = BatchingSettings(max_batch_views=2, max_delay_ms=0)
        batcher = Batcher(runtime, settings, observer=observer)
        batcher.start()
        blocker = asyncio.create_task(batcher.submit(views(0, 2), deadline=deadline()))
        await asyncio.sleep(0.05)
        with pytest.raises(DeadlineExceeded, match="6 of its 6 views"):
            await batcher.submit(views(1, 6), deadline=deadline(0.1))
        queued_after = depths[-1]
        await blocker
        await batcher.close()
        return runtime, queued_after

    runtime, queued_after = run(scenario())
    assert queued_after == 0
    assert runtime.batch_sizes == [2]  # the expired request never ran


def test_a_cancelled_request_frees_its_place() -> None:
    """What a client disconnect does: the waiting task is cancelled."""

    async def scenario():
        runtime, depths = FakeRuntime(seconds_per_batch=0.3), []
        observer = BatchObserver(on_queue_depth=depths.append)
        settings = BatchingSettings(max_batch_views=2, max_delay_ms=0)
        batcher = Batcher(runtime, settings, observer=observer)
        batcher.start()
        blocker = asyncio.create_task(batcher.submit(views(0, 2), deadline=deadline()))
        await asyncio.sleep(0.05)
        gone = asyncio.create_task(batcher.submit(views(1, 4), deadline=deadline()))
        await asyncio.sleep(0.01)
        assert depths[-1] == 4
        gone.cancel()
        await asyncio.gather(gone, return_exceptions=True)
        queued_after = depths[-1]
        await blocker
        await batcher.close()
        return runtime, queued_after

    runtime, queued_after = run(scenario())
    assert queued_after == 0 and runtime.batch_sizes == [2]


def test_one_failing_request_does_not_fail_its_batch_mates() -> None:
    async def scenario():
        runtime = FakeRuntime()
        batcher = Batcher(runtime, BatchingSettings(max_batch_views=16, max_delay_ms=50))
        batcher.start()
        bad = views(1, 3)
        bad[1] = np.nan
        results = await asyncio.gather(
            batcher.submit(views(0, 3), deadline=deadline()),
            batcher.submit(bad, deadline=deadline()),
            batcher.submit(views(2, 3), deadline=deadline()),
            return_exceptions=True,
        )
        await batcher.close()
        return results

    good, failed, other = run(scenario())
    assert isinstance(failed, InferenceFailed) and "NaN" in str(failed)
    np.testing.assert_array_equal(good.logits[:, 0], [0, 1, 2])
    np.testing.assert_array_equal(other.logits[:, 0], [200, 201, 202])


def test_close_lets_queued_work_finish_then_refuses() -> None:
    async def scenario():
        runtime = FakeRuntime(seconds_per_batch=0.1)
        batcher = Batcher(runtime, BatchingSettings(max_batch_views=2, max_delay_ms=0))
        batcher.start()
        pending = [
            asyncio.create_task(batcher.submit(views(r, 2), deadline=deadline())) for r in range(3)
        ]
        await asyncio.sleep(0.01)
        await batcher.close()
        done = await asyncio.gather(*pending)
        with pytest.raises(NotReady):
            await batcher.submit(views(9, 1), deadline=deadline())
        return runtime, done

    runtime, done = run(scenario())
    assert len(done) == 3 and sum(runtime.batch_sizes) == 6


def test_a_batch_waits_for_mates_only_while_requests_are_on_their_way() -> None:
    """With nothing uploading or decoding (`upstream` 0) a lone request's views leave at
    once, whatever `max_delay_ms`; with a request on its way they wait for it."""

    async def scenario():
        on_their_way = 0
        runtime = FakeRuntime()
        settings = BatchingSettings(max_batch_views=4, max_delay_ms=10_000)
        batcher = Batcher(runtime, settings, upstream=lambda: on_their_way)
        batcher.start()
        lone = await asyncio.wait_for(batcher.submit(views(0, 1), deadline=deadline(30)), 5)
        on_their_way = 1
        first = asyncio.create_task(batcher.submit(views(1, 1), deadline=deadline()))
        await asyncio.sleep(0.3)
        waited = not first.done()
        on_their_way = 0
        second = await batcher.submit(views(2, 3), deadline=deadline())
        await batcher.close()
        return runtime, lone, waited, await first, second

    runtime, lone, waited, first, second = run(scenario())
    assert lone.batches == 1 and waited
    assert runtime.batch_sizes == [1, 4]  # the waiting view left with its batch-mates
    assert first.batches == second.batches == 1


class TwoLaneRuntime(FakeRuntime):
    """A runtime that runs two batches at once (OpenVINO's streams), and proves it: each
    batch waits in `run` until another is running beside it."""

    lanes = 2

    def __init__(self) -> None:
        super().__init__()
        self.together = threading.Barrier(2, timeout=10)

    def run(self, clips: np.ndarray):
        self.together.wait()  # BrokenBarrierError unless two batches run at once
        return super().run(clips)


def test_a_runtime_with_lanes_runs_that_many_batches_at_once() -> None:
    """A batch starts while the previous one runs, up to the runtime's lanes; the rest wait
    for a lane, and every request gets its own views back."""

    async def scenario():
        runtime = TwoLaneRuntime()
        batcher = Batcher(runtime, BatchingSettings(max_batch_views=2, max_delay_ms=0))
        batcher.start()
        counts = [2, 2, 1, 1, 2]  # batches of 2, two at a time
        results = await asyncio.gather(
            *(batcher.submit(views(r, n), deadline=deadline()) for r, n in enumerate(counts))
        )
        await batcher.close()
        return runtime, counts, results

    runtime, counts, results = run(scenario())
    assert len(runtime.threads) == 2 and not runtime.together.broken
    assert runtime.batch_sizes == [2, 2, 2, 2]
    for request, (count, out) in enumerate(zip(counts, results, strict=True)):
        np.testing.assert_array_equal(out.logits[:, 0], request * 100 + np.arange(count))
