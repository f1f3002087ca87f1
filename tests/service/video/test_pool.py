"""The decode pool: work runs in worker processes, and a bad job fails alone.

Every failure test ends by showing that the pool still serves the next request.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import numpy as np
import pytest

from model_store.spec import Recipe
from service.errors import (
    AudioOnly,
    CorruptVideo,
    DecodeOutOfMemory,
    DecodeTimeout,
    LimitExceeded,
    NotAVideo,
    WorkerCrashed,
    status_for,
)
from service.video import (
    DecodeOptions,
    DecodePool,
    DecodeSettings,
    VideoLimits,
    decode_video,
    probe_video,
)
from tests.service.video import decode, jobs

#: The intake's default limits, passed explicitly as the service passes its own.
LIMITS = VideoLimits()

RECIPE = Recipe(
    clip_len=4,
    frame_interval=2,
    num_clips=3,
    num_crops=3,
    short_side=32,
    crop_size=32,
    pixel_scale=1.0,
    mean=(0.45, 0.45, 0.45),
    std=(0.225, 0.225, 0.225),
)
MEMORY_LIMIT = 2**30


@pytest.fixture(scope="module")
def pool() -> Iterator[DecodePool]:
    pool = DecodePool(
        DecodeSettings(workers=2, timeout_s=2.0, memory_mb=MEMORY_LIMIT // 2**20), LIMITS
    )
    asyncio.run(pool.start())
    yield pool
    asyncio.run(pool.close())


def still_serves(pool: DecodePool, videos) -> None:
    video = asyncio.run(decode(pool, videos["h264.mp4"], RECIPE))
    assert video.views.shape == (9, 3, 4, 32, 32)


def test_pool_decodes_exactly_like_the_calling_process(pool, videos) -> None:
    path = videos["mpeg4.avi"]
    pooled = asyncio.run(decode(pool, path, RECIPE, DecodeOptions(profile="fast")))
    local = decode_video(path, RECIPE, DecodeOptions(profile="fast"), LIMITS)
    np.testing.assert_array_equal(pooled.views, local.views)
    assert pooled.info == local.info
    assert asyncio.run(pool.run(probe_video, str(path), LIMITS)) == probe_video(path, LIMITS)
    assert pool.backlog == 0


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("random.bin", NotAVideo),
        ("audio.webm", AudioOnly),
        ("no_moov.mp4", CorruptVideo),
        ("bomb.avi", LimitExceeded),
    ],
)
def test_typed_errors_cross_the_process_boundary(pool, videos, name: str, error: type) -> None:
    with pytest.raises(error) as pooled:
        asyncio.run(decode(pool, videos[name], RECIPE))
    with pytest.raises(error) as local:
        decode_video(videos[name], RECIPE, DecodeOptions(), LIMITS)
    assert str(pooled.value) == str(local.value)
    # pebble adds the worker's traceback as `traceback`; every field of ours survives
    assert vars(pooled.value).items() >= vars(local.value).items()


def test_a_hanging_job_times_out_and_its_worker_is_replaced(pool, videos) -> None:
    with pytest.raises(DecodeTimeout, match="longer than 2 s") as caught:
        asyncio.run(pool.run(jobs.sleep_forever))
    assert caught.value.seconds == 2.0
    still_serves(pool, videos)


@pytest.mark.slow
def test_a_job_deaf_to_sigterm_is_killed(videos) -> None:
    """A decoder stuck in C never returns to Python's SIGTERM handler: pebble SIGKILLs it."""

    async def scenario() -> None:
        async with DecodePool(DecodeSettings(workers=1, timeout_s=1.0), LIMITS) as deaf:
            with pytest.raises(DecodeTimeout):
                await deaf.run(jobs.sleep_through_sigterm)
            assert (await decode(deaf, videos["h264.mp4"], RECIPE)).views.shape[0] == 9

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("job", "argument", "exitcode"),
    [
        # signals, as a decoder bug or the kernel's OOM killer would send them
        (jobs.kill_self, signal.SIGSEGV, -signal.SIGSEGV),
        (jobs.kill_self, signal.SIGKILL, -signal.SIGKILL),
        (jobs.kill_self, signal.SIGABRT, -signal.SIGABRT),
        # an abrupt exit from native code
        (jobs.exit_abruptly, 3, 3),
    ],
)
def test_a_crashing_job_fails_alone(pool, videos, job, argument, exitcode: int) -> None:
    """It dies on its worker and again on a fresh one: a 503, not the upload's 422."""
    with pytest.raises(WorkerCrashed, match="died twice") as caught:
        asyncio.run(pool.run(job, argument))
    assert caught.value.exitcode == exitcode
    assert status_for(caught.value) == 503
    still_serves(pool, videos)


def test_a_worker_killed_once_is_replaced_and_the_job_runs_again(pool, tmp_path) -> None:
    """A worker killed from outside (or by the OOM killer) is not the request's fault."""
    assert asyncio.run(pool.run(jobs.crash_once, str(tmp_path / "crashed"))) == "done"
    assert (tmp_path / "crashed").exists()


def test_workers_go_to_clients_in_turn(videos) -> None:
    """One worker; client a queues three jobs before b queues one: b's runs second, not
    fourth, and every job waits in a bounded, measured backlog."""

    async def scenario() -> list[str]:
        async with DecodePool(DecodeSettings(workers=1), LIMITS) as one:
            first = asyncio.create_task(one.run(jobs.sleep_then, 0.3, "a1", client="a"))
            await asyncio.sleep(0.05)  # a1 holds the worker
            rest = [
                asyncio.create_task(one.run(jobs.sleep_then, 0.05, label, client=client))
                for label, client in (("a2", "a"), ("a3", "a"), ("a4", "a"), ("b1", "b"))
            ]
            await asyncio.sleep(0.05)
            assert one.backlog == 5
            done = await asyncio.gather(first, *rest)
            assert one.backlog == 0
        return [label for label, _ in sorted(done, key=lambda item: item[1])]

    assert asyncio.run(scenario()) == ["a1", "a2", "b1", "a3", "a4"]


def test_a_memory_hungry_job_hits_the_worker_limit(pool, videos) -> None:
    assert asyncio.run(pool.run(jobs.address_space_limit)) == (MEMORY_LIMIT, MEMORY_LIMIT)
    with pytest.raises(DecodeOutOfMemory, match="1024 MiB") as caught:
        asyncio.run(pool.run(jobs.allocate, 3 * MEMORY_LIMIT))
    assert caught.value.limit_bytes == MEMORY_LIMIT
    still_serves(pool, videos)


def test_a_decompression_bomb_hits_the_worker_limit(videos) -> None:
    """4096×4096 MJPEG frames (16 MB each decoded) let through the pixel limit on purpose."""
    bomb, small = videos["bomb.avi"], videos["h264.mp4"]
    single = DecodeOptions(decoder_threads=1)  # thread stacks would blur the margin

    async def scenario() -> None:
        async with DecodePool(DecodeSettings(workers=1, memory_mb=None), LIMITS) as probe_pool:
            baseline = await probe_pool.run(jobs.address_space_now)
        tight = DecodePool(
            DecodeSettings(workers=1, memory_mb=-(-baseline // 2**20) + 24),
            VideoLimits(max_pixels=4096 * 4096),
        )
        async with tight:
            assert (await decode(tight, small, RECIPE, single)).views.shape[0] == 9
            with pytest.raises(DecodeOutOfMemory):
                await decode(tight, bomb, RECIPE, single)
            assert (await decode(tight, small, RECIPE, single)).views.shape[0] == 9

    asyncio.run(scenario())


def test_cancelling_a_request_stops_its_worker(pool, videos, tmp_path) -> None:
    """A client that goes away takes its decode with it."""
    pid_file = tmp_path / "pid"

    async def scenario() -> int:
        job = asyncio.create_task(pool.run(jobs.sleep_forever, str(pid_file)))
        while not pid_file.exists() or not pid_file.read_text():
            await asyncio.sleep(0.05)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        assert pool.backlog == 0
        return int(pid_file.read_text())

    pid = asyncio.run(scenario())
    for _ in range(100):  # pebble stops the worker from its manager thread
        if not os.path.exists(f"/proc/{pid}"):
            break
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}")
    still_serves(pool, videos)


def test_workers_stay_light(pool) -> None:
    """Workers import the video package, numpy and PyAV; never torch or the model zoo."""
    heavy = asyncio.run(pool.run(jobs.loaded, ("torch", "backbones", "exporters", "fastapi")))
    assert heavy == []
    assert asyncio.run(pool.run(jobs.loaded, ("av", "numpy", "service.video"))) == [
        "av",
        "numpy",
        "service.video",
    ]


def test_a_closed_pool_starts_again_on_demand(videos) -> None:
    async def scenario() -> None:
        pool = DecodePool(DecodeSettings(workers=1), LIMITS)
        await pool.start()
        await pool.close()
        assert (await decode(pool, videos["h264.mp4"], RECIPE)).views.shape[0] == 9
        await pool.close()

    asyncio.run(scenario())


def test_workers_live_as_long_as_they_are_healthy(videos) -> None:
    """No recycling by default: a fresh worker costs an interpreter start and the imports."""

    async def scenario() -> set[int]:
        async with DecodePool(DecodeSettings(workers=1), LIMITS) as pool:
            await decode(pool, videos["h264.mp4"], RECIPE)
            return {await pool.run(os.getpid) for _ in range(150)}

    assert len(asyncio.run(scenario())) == 1


def test_adaptive_decoder_threads_give_a_lone_job_the_idle_workers_share() -> None:
    """By default a job starting alone gets every worker's thread (frame threads on idle
    cores), and one thread each once the workers are all busy; a set count is kept."""

    async def threads(settings: DecodeSettings) -> tuple[int, int]:
        async with DecodePool(settings, LIMITS) as pool, pool._slots.turn("a"):
            alone = pool.job_threads()
            async with pool._slots.turn("b"):
                return alone, pool.job_threads()

    assert DecodeSettings().decoder_threads is None
    assert asyncio.run(threads(DecodeSettings(workers=2))) == (2, 1)
    assert asyncio.run(threads(DecodeSettings(workers=2, decoder_threads=1))) == (1, 1)
    assert asyncio.run(threads(DecodeSettings(workers=2, decoder_threads=0))) == (0, 0)


def test_decode_workers_run_at_a_lower_priority_than_the_service() -> None:
    """Under saturation the event loop and inference go first: workers are niced."""

    async def scenario() -> list[int]:
        niced = DecodeSettings(workers=1, nice=5)
        plain = DecodeSettings(workers=1, nice=0)
        async with DecodePool(niced, LIMITS) as a, DecodePool(plain, LIMITS) as b:
            return [await a.run(os.nice, 0), await b.run(os.nice, 0)]

    own = os.nice(0)
    assert asyncio.run(scenario()) == [min(own + 5, 19), own]


def test_waiting_for_a_free_worker_is_reported_apart_from_decoding(videos) -> None:
    """One worker, two decodes at once: the second waits for the first."""

    async def scenario():
        async with DecodePool(DecodeSettings(workers=1), LIMITS) as pool:
            return await asyncio.gather(
                *(decode(pool, videos["h264.mp4"], RECIPE) for _ in range(2))
            )

    first, second = sorted(asyncio.run(scenario()), key=lambda video: video.wait_s)
    assert second.wait_s > first.wait_s >= 0
