"""One request's work, from a received file to per-view outputs: decode in a worker, then
the model version's batcher.

A two-stream version (rgb + flow) decodes once into both kinds of views (the worker computes
the flow), runs each on its own runtime through its own batcher at the same time, and fuses
them view by view: the weighted mean of the two softmaxes, as log-probabilities, so whatever
reads per-view logits (the softmax average over views, per-clip scores) reads the fused
answer.

    classified = await classify(loaded, pool, path, options, deadline=deadline)
    classified.outputs.logits          # (V, K), one row per view
    classified.decoded.plan.clips      # which stretch of the video each clip stands for

HTTP plays no part here (the routes receive uploads and shape responses), so every endpoint
that classifies or embeds a video, and the command line, run the same steps.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

import numpy as np

from model_store import Fusion, Modality, Profile, Sampling
from service.batching import ViewOutputs
from service.errors import DeadlineExceeded
from service.loaded_models import LoadedModel
from service.metrics import RequestStages
from service.predict import softmax
from service.video import DecodedVideo, DecodeOptions, DecodePool
from service.windows import classify_windows


@dataclass(frozen=True)
class ClassifyOptions:
    """Per-request choices: which views (`profile`, `per_clip` windows), and who asks (the
    key the decode workers are shared fairly by)."""

    profile: Profile | None = None  # None: the manifest's default profile
    per_clip: bool = False
    client: str = "-"

    def decode_options(self, loaded: LoadedModel) -> DecodeOptions:
        return DecodeOptions(profile=self.profiled(loaded), windows=self.per_clip)

    def profiled(self, loaded: LoadedModel) -> Profile:
        return self.profile or loaded.manifest.default_profile


@dataclass(frozen=True)
class StreamTiming:
    """Where one stream of a two-stream request spent its time (seconds)."""

    queue_s: float
    inference_s: float
    flow_s: float = 0.0


@dataclass(frozen=True)
class Classified:
    """A video through one model version: its views' outputs and where the time went.

    For a two-stream version `outputs` are the fused views, `decoded` the RGB views' video and
    `streams` each stream's timings.
    """

    loaded: LoadedModel
    profile: Profile
    decoded: DecodedVideo
    outputs: ViewOutputs
    decode_s: float  # in a worker and assembling the views, without waiting for a worker
    streams: dict[Modality, StreamTiming] | None = None

    def stages(self, *, upload_s: float, upload_bytes: int, total_s: float) -> RequestStages:
        """The request's stage times, for the response and the metrics."""
        return RequestStages(
            upload_s=upload_s,
            decode_wait_s=self.decoded.wait_s,
            decode_s=self.decode_s,
            queue_s=self.outputs.queue_seconds,
            inference_s=self.outputs.inference_seconds,
            total_s=total_s,
            upload_bytes=upload_bytes,
            views=self.decoded.num_views,
            frames_decoded=self.decoded.frames_decoded,
        )


async def classify(
    loaded: LoadedModel,
    pool: DecodePool,
    path: str | os.PathLike[str],
    options: ClassifyOptions,
    *,
    deadline: float,
) -> Classified:
    """Decode `path` into the views `options` ask for and run them through `loaded`'s
    batcher, all before `deadline` (the event loop's clock) or `DeadlineExceeded`.

    The caller holds `loaded.lease()` so the version cannot be freed meanwhile.
    """
    profile = options.profiled(loaded)
    if whole_video(loaded, options) and streamable(loaded):  # any length: chunk by chunk
        decoded, outputs, decode_s = await classify_windows(
            loaded,
            pool,
            path,
            options.decode_options(loaded),
            client=options.client,
            deadline=deadline,
        )
        return Classified(loaded, profile, decoded, outputs, decode_s)
    started = time.perf_counter()
    recipes = tuple(network.spec.recipe for network in loaded.manifest.networks())
    try:
        async with asyncio.timeout_at(deadline):
            decoded = await pool.decode_streams(
                path, recipes, options.decode_options(loaded), client=options.client
            )
    except TimeoutError:
        raise DeadlineExceeded(
            "the request's deadline (ACTSERVE_REQUEST_TIMEOUT_S) passed while decoding"
        ) from None
    decode_s = time.perf_counter() - started - decoded[0].wait_s
    if loaded.flow is None:
        outputs = await loaded.batcher.submit(decoded[0].views, deadline=deadline)
        return Classified(loaded, profile, decoded[0], outputs, decode_s)
    rgb, flow = await _both(
        loaded.batcher.submit(decoded[0].views, deadline=deadline),
        loaded.flow.batcher.submit(decoded[1].views, deadline=deadline),
    )
    streams = {
        Modality.RGB: StreamTiming(rgb.queue_seconds, rgb.inference_seconds),
        Modality.FLOW: StreamTiming(flow.queue_seconds, flow.inference_seconds, decoded[1].flow_s),
    }
    fused = fuse(rgb, flow, loaded.manifest.fusion)
    return Classified(loaded, profile, decoded[0], fused, decode_s, streams)


def whole_video(loaded: LoadedModel, options: ClassifyOptions) -> bool:
    """Whether the views are windows over the whole video: `per_clip`, or the `accurate`
    profile of a sliding-window protocol (3D-ResNets' `SlidingWindow`)."""
    sliding = loaded.manifest.spec.recipe.sampling == Sampling.SLIDING
    return options.per_clip or (sliding and options.profiled(loaded) == Profile.ACCURATE)


def streamable(loaded: LoadedModel) -> bool:
    """Whether whole-video windows stream in chunks (`service.windows`): one RGB network. A
    two-stream or flow version decodes its windows in one job (bounded by
    ACTSERVE_MAX_VIEW_BYTES)."""
    return loaded.flow is None and loaded.manifest.spec.recipe.modality == Modality.RGB


async def _both(first, second) -> tuple[ViewOutputs, ViewOutputs]:
    """Await two submissions together; if one fails, the other's views leave the queue."""
    tasks = [asyncio.ensure_future(first), asyncio.ensure_future(second)]
    try:
        return tuple(await asyncio.gather(*tasks))  # type: ignore[return-value]
    except BaseException:
        for task in tasks:
            task.cancel()
        raise


def fuse(rgb: ViewOutputs, flow: ViewOutputs, fusion: Fusion) -> ViewOutputs:
    """View by view: log(Σ w_s softmax_s / Σ w_s); embeddings side by side (rgb, then flow).

    Averaging the fused views' softmax over views equals fusing each stream's average, so
    the usual averaging downstream gives the two-stream papers' score fusion.
    """
    w_rgb, w_flow = fusion.weights[Modality.RGB], fusion.weights[Modality.FLOW]
    mixed = (w_rgb * softmax(rgb.logits) + w_flow * softmax(flow.logits)) / (w_rgb + w_flow)
    return ViewOutputs(
        logits=np.log(np.maximum(mixed, np.finfo(np.float64).tiny)),
        embedding=np.concatenate([rgb.embedding, flow.embedding], axis=1),
        # The request waits for the slower stream; both runtimes' time counts.
        queue_seconds=max(rgb.queue_seconds, flow.queue_seconds),
        inference_seconds=rgb.inference_seconds + flow.inference_seconds,
        batches=rgb.batches + flow.batches,
    )
