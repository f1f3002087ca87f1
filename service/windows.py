"""Windows over a whole video (`per_clip`, or a sliding-window protocol's `accurate`) in
bounded memory: every window planned once, then decoded and run a chunk of windows at a time,
the next chunk decoding while the current one is inferred.

    plan       (worker: index + every window's frame times; no pixels)  -> ViewPlan
    chunk k    sample_streams of its windows (worker) -> assemble_views -> the batcher
    chunk k+1  decoding meanwhile

At most two chunks of frames and views are alive, whatever the video's length (a chunk is at
most `CHUNK_VIEW_BYTES` of float32 views and `CHUNK_VIEWS` views); what accumulates is a row of
logits and embedding per view. Each chunk takes its own turn at the decode workers, so a long
video shares them fairly with short requests, and the pool's per-job time limit and decode
budget apply per chunk.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable
from dataclasses import replace
from typing import TypeVar

import numpy as np

from model_store import Recipe
from service.batching import ViewOutputs
from service.errors import DeadlineExceeded, LimitExceeded
from service.loaded_models import LoadedModel
from service.video import (
    DecodedVideo,
    DecodeOptions,
    DecodePool,
    ViewPlan,
    assemble_views,
    plan_windows,
)

T = TypeVar("T")

#: Float32 bytes of views in one chunk (and at most ACTSERVE_MAX_VIEW_BYTES).
CHUNK_VIEW_BYTES = 64 * 2**20
#: Views in one chunk: a few batches, so the batcher's queue bound is never hit by one chunk.
CHUNK_VIEWS = 96


async def classify_windows(
    loaded: LoadedModel,
    pool: DecodePool,
    path: str | os.PathLike[str],
    options: DecodeOptions,
    *,
    client: str,
    deadline: float,
) -> tuple[DecodedVideo, ViewOutputs, float]:
    """Every window of `path` through `loaded`'s batcher, a chunk at a time; returns the
    merged video description (its `views` empty: they were dropped chunk by chunk), every
    view's outputs, and the seconds spent decoding."""
    recipe = loaded.manifest.spec.recipe
    file = os.fspath(path)
    started = time.perf_counter()
    plan = await _before(
        deadline, pool.run(plan_windows, file, recipe, options, pool.limits, client=client)
    )
    decode_s = time.perf_counter() - started
    bounds = chunk_bounds(plan, recipe, pool.limits.max_view_bytes)

    async def decode(start: int, stop: int) -> tuple[DecodedVideo, float]:
        began = time.perf_counter()
        (sampled,), _ = await pool.sample(file, (recipe,), options, (start, stop), client=client)
        video = await asyncio.to_thread(assemble_views, sampled, recipe)
        return video, time.perf_counter() - began

    parts: list[tuple[DecodedVideo, ViewOutputs]] = []
    upcoming = asyncio.ensure_future(decode(*bounds[0]))
    try:
        for number in range(len(bounds)):
            decoded, seconds = await _before(deadline, upcoming)
            decode_s += seconds
            if number + 1 < len(bounds):
                upcoming = asyncio.ensure_future(decode(*bounds[number + 1]))
            outputs = await loaded.streams[0].batcher.submit(decoded.views, deadline=deadline)
            parts.append((replace(decoded, views=decoded.views[:0]), outputs))
    finally:
        if not upcoming.done():
            upcoming.cancel()
            await asyncio.gather(upcoming, return_exceptions=True)
    decoded, outputs = merge_chunks(plan, [start for start, _ in bounds], parts)
    return decoded, outputs, decode_s


def chunk_bounds(
    plan: ViewPlan, recipe: Recipe, max_view_bytes: int, max_views: int | None = None
) -> list[tuple[int, int]]:
    """[start, stop) window ranges of the chunks: as many windows as fit `max_views` views
    (default `CHUNK_VIEWS`) and `CHUNK_VIEW_BYTES` (or `max_view_bytes`, if smaller) of
    float32 views."""
    crops = len(plan.crops)
    window_bytes = crops * 4 * int(np.prod(recipe.clip_shape))
    budget = min(CHUNK_VIEW_BYTES, max_view_bytes)
    if window_bytes > budget:
        raise LimitExceeded("view_bytes", window_bytes, budget, "bytes")
    step = max(1, min((max_views or CHUNK_VIEWS) // crops, budget // window_bytes))
    count = len(plan.clips)
    return [(start, min(start + step, count)) for start in range(0, count, step)]


def merge_chunks(
    plan: ViewPlan, starts: list[int], parts: list[tuple[DecodedVideo, ViewOutputs]]
) -> tuple[DecodedVideo, ViewOutputs]:
    """The chunks as one video and one set of outputs, windows numbered over the whole plan
    (its sizes and the video's description from the chunks, which decoded frames)."""
    videos = [video for video, _ in parts]
    outputs = [output for _, output in parts]
    decoded = DecodedVideo(
        views=videos[0].views,
        view_clip=np.concatenate([v.view_clip + s for v, s in zip(videos, starts, strict=True)]),
        view_crop=np.concatenate([v.view_crop for v in videos]),
        view_start_s=np.concatenate([v.view_start_s for v in videos]),
        view_end_s=np.concatenate([v.view_end_s for v in videos]),
        info=videos[0].info,
        plan=replace(videos[0].plan, clips=plan.clips),
        frames_decoded=sum(v.frames_decoded for v in videos),
        warnings=tuple(dict.fromkeys(w for v in videos for w in v.warnings)),
        decode_s=sum(v.decode_s for v in videos),
        shots=None if videos[0].shots is None else tuple(b for v in videos for b in v.shots or ()),
    )
    merged = ViewOutputs(
        logits=np.concatenate([o.logits for o in outputs]),
        embedding=np.concatenate([o.embedding for o in outputs]),
        queue_seconds=sum(o.queue_seconds for o in outputs),
        inference_seconds=sum(o.inference_seconds for o in outputs),
        batches=sum(o.batches for o in outputs),
    )
    return decoded, merged


async def _before(deadline: float, work: Awaitable[T]) -> T:
    try:
        async with asyncio.timeout_at(deadline):
            return await work
    except TimeoutError:
        raise DeadlineExceeded(
            "the request's deadline (ACTSERVE_REQUEST_TIMEOUT_S) passed while decoding"
        ) from None
