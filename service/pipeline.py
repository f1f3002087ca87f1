"""One request's work, from a received file to per-view outputs: decode in a worker, then
the model version's batcher.

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

from model_store import Profile
from service.batching import ViewOutputs
from service.errors import DeadlineExceeded
from service.loaded_models import LoadedModel
from service.metrics import RequestStages
from service.video import DecodedVideo, DecodeOptions, DecodePool


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
class Classified:
    """A video through one model version: its views' outputs and where the time went."""

    loaded: LoadedModel
    profile: Profile
    decoded: DecodedVideo
    outputs: ViewOutputs
    decode_s: float  # in a worker and assembling the views, without waiting for a worker

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
            views=len(self.decoded.views),
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
    started = time.perf_counter()
    recipe = loaded.manifest.spec.recipe
    try:
        async with asyncio.timeout_at(deadline):
            decoded = await pool.decode(
                path, recipe, options.decode_options(loaded), client=options.client
            )
    except TimeoutError:
        raise DeadlineExceeded(
            "the request's deadline (ACTSERVE_REQUEST_TIMEOUT_S) passed while decoding"
        ) from None
    decode_s = time.perf_counter() - started - decoded.wait_s
    outputs = await loaded.batcher.submit(decoded.views, deadline=deadline)
    return Classified(loaded, options.profiled(loaded), decoded, outputs, decode_s)
