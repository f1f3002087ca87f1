"""The engine: the service's long-lived parts, and videos and tensors run through them.

Every way in (the HTTP routes, `actserve batch` and `actserve probe` through
`actserve.local.LocalPipeline`, and any other front: a job worker, a live stream) holds one
`Engine` and passes the same door: admission, the drain, the decode workers, the model
versions' batchers, the metrics. HTTP plays no part here.

    async with Engine(Settings(decode_workers=2)) as engine:     # start() ... close()
        loaded = engine.resolve("demo-actions")                  # 404 / 503 as errors
        with engine.admit(loaded, client="10.0.0.7") as ticket:  # 429 / 503 before reading
            ...receive the upload..., then ticket.received()
            (run,) = await engine.run_videos(
                loaded, [path], RunOptions(profile="fast"), deadline=engine.deadline()
            )
        run.outputs.logits      # (V, K), one row per view (two streams: fused)
        run.stages.to_timings() # where the time went, as responses show it

The public surface (stable; everything else here is private):

- `Engine(settings=None)`: `settings`, `metrics`, `models` (routing and versions),
  `pool` (decode workers), `admission` (the door's counters);
- `await start(models=None)` / `await close()` (or `async with`), `ready`, `draining`,
  `drain()`;
- `resolve(model, version, alias) -> LoadedModel`, `deadline() -> float`;
- `admit(loaded, client, *, tensors=False)`: a context manager giving a `Ticket`;
- `await run_videos(loaded, videos, options, *, deadline, started=None) -> list[VideoRun]`;
- `await run_tensors(loaded, clips, *, deadline, started=None) -> ViewOutputs`;
- `RunOptions`, `VideoFile`, `VideoRun`, `Ticket`; `Admission` (the door, `engine.admission`).

A two-stream version (rgb + flow) decodes once into both kinds of views (the worker computes
the flow), runs each on its own runtime through its own batcher at the same time, and fuses
them view by view (`scores.fuse_logits`), so whatever reads per-view logits reads the fused
answer.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from model_store import Modality, ModelStore, Profile, Recipe, Sampling
from model_store.store import parse_model_ref
from service.batching import ViewOutputs
from service.errors import (
    BadRequest,
    DeadlineExceeded,
    LimitExceeded,
    NotReady,
    Overloaded,
    ServiceError,
)
from service.loaded_models import LoadedModel, LoadedModels
from service.logs import note_stages
from service.metrics import RequestStages, ServiceMetrics, StreamTiming
from service.scores import fuse_logits
from service.settings import AdmissionSettings, Settings
from service.video import DecodedVideo, DecodeOptions, DecodePool
from service.video.pool import DecodeSettings
from service.video.shots import ShotBoundary, ShotRule, prune
from service.windows import classify_windows
from window_index import WindowIndex

__all__ = ["Admission", "Engine", "RunOptions", "Ticket", "VideoFile", "VideoRun"]

T = TypeVar("T")
logger = logging.getLogger("actserve")

#: The most a Retry-After may say: beyond it the estimate is not worth trusting.
MAX_RETRY_AFTER_S = 300


@dataclass(frozen=True)
class RunOptions:
    """Per-request choices: which views (`profile`, `per_clip` windows over the whole
    video), and who asks (the key the decode workers are shared fairly by)."""

    profile: Profile | None = None  # None: the version's default profile
    per_clip: bool = False
    client: str = "-"
    shots: ShotRule | None = None  # also find the shot boundaries, in the views' decode

    def profile_of(self, loaded: LoadedModel) -> Profile:
        return self.profile or loaded.manifest.default_profile


@dataclass(frozen=True)
class VideoFile:
    """A video file on this machine, and how it arrived: `name` (an upload's field, else the
    path) names it in errors; an upload's `bytes` and `upload_s` count in its stages."""

    path: Path
    name: str = ""
    bytes: int = 0
    upload_s: float = 0.0


@dataclass(frozen=True)
class VideoRun:
    """A video through one model version: its views' outputs and where the time went.

    For a two-stream version `outputs` are the fused views, `decoded` the RGB views' video
    (its `views` may be empty: whole-video windows are dropped chunk by chunk) and
    `stages.streams` each stream's timings.
    """

    loaded: LoadedModel
    profile: Profile
    decoded: DecodedVideo
    outputs: ViewOutputs
    stages: RequestStages
    shots: tuple[ShotBoundary, ...] | None = None  # with `RunOptions.shots`


# ---------------------------------------------------------------------------- the door
# On CPU a request's time goes into decoding, so that is where overload is shed. A request is
# refused with 429 *before its body is read* when the uploads in progress or the decode
# backlog (requests waiting for a decode worker or decoding) are at their bounds, with a
# Retry-After computed from the real backlog and the measured decode time; 503 while the
# engine drains. The inference queue keeps its own bound (the batcher's `max_queue_views`);
# the decode backlog itself lives in `DecodePool` (its `max_pending` bound and round-robin
# hand-out of workers across clients): the door decides, before anything is read.


class Ticket:
    """One admitted request's place. As a context manager it counts as receiving its body
    (an upload in progress, or /v2 tensors on their way to a batcher) until `received()` or
    the block ends. `started`: when it was admitted (`time.perf_counter()`)."""

    def __init__(self, admission: Admission, client: str, *, tensors: bool = False) -> None:
        self.admission = admission
        self.client = client
        self.tensors = tensors
        self.started = time.perf_counter()
        self._receiving = False

    def __enter__(self) -> Ticket:
        self._count(+1)
        self._receiving = True
        return self

    def received(self) -> None:
        """The body is in: no longer counted as receiving."""
        if self._receiving:
            self._receiving = False
            self._count(-1)

    def _count(self, step: int) -> None:
        if self.tensors:
            self.admission.bodies += step
        else:
            self.admission.uploads += step

    def __exit__(self, *exc_info: object) -> None:
        self.received()


class Admission:
    """The door: refuses what the service cannot serve soon, says when to come back."""

    def __init__(
        self,
        settings: AdmissionSettings,
        pool: DecodePool,
        *,
        inference_backlog_s: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.inference_backlog_s = inference_backlog_s
        self.uploads = 0
        #: /v2 tensor bodies being read, on their way to a batcher.
        self.bodies = 0
        #: Set when the server starts draining: new requests get 503.
        self.draining = False

    def client_of(self, headers: Mapping[str, str], peer: str | None) -> str:
        """The fairness key: the configured header's first value, else the peer address."""
        header = self.settings.client_header
        value = headers.get(header) if header else None
        if value:
            return value.split(",")[0].strip()[:128]
        return peer or "-"

    @property
    def upstream(self) -> int:
        """Requests that have not reached inference yet: uploading, waiting for a decode
        worker or decoding, or sending /v2 tensors (what a batcher may still expect views
        from)."""
        return self.uploads + self.bodies + self.pool.backlog

    def admit(self, client: str, *, tensors: bool = False) -> Ticket:
        """A place for a new request (enter it with `with`), or `NotReady` (draining) /
        `Overloaded` (full): decided before the request's body is read. A `tensors` request
        (/v2) has no upload or decode: only the drain refuses it."""
        if self.draining:
            raise NotReady("the server is draining; retry on another replica")
        if tensors:
            return Ticket(self, client, tensors=True)
        if self.uploads >= self.settings.max_uploads:
            raise Overloaded(
                f"{self.uploads} uploads are in progress (limit {self.settings.max_uploads}, "
                "ACTSERVE_MAX_CONCURRENT_UPLOADS); retry later",
                retry_after=self.retry_after(),
            )
        full = self.pool.full()
        if full is not None:
            raise Overloaded(f"{full}; retry later", retry_after=self.retry_after())
        return Ticket(self, client)

    def retry_after(self) -> int:
        """Seconds until a request sent now would likely be taken: the decode backlog at the
        measured decode time per request, plus the inference queue's."""
        seconds = self.pool.drain_estimate_s() + self.inference_backlog_s()
        return max(1, min(MAX_RETRY_AFTER_S, math.ceil(seconds)))


class Engine:
    """The service's long-lived parts, owned together; see the module's docstring."""

    def __init__(self, settings: Settings | None = None) -> None:
        settings = settings or Settings()
        if not settings.store.is_dir():
            raise RuntimeError(f"no model store at {settings.store} (ACTSERVE_STORE)")
        self.settings = settings
        self.metrics = ServiceMetrics()
        self.pool = DecodePool(settings.decode, settings.video)
        self.models = LoadedModels(
            ModelStore(settings.store),
            self.metrics,
            runtime=settings.runtime,
            batching=settings.batching,
            drain_timeout_s=settings.drain_timeout_s,
            upstream=lambda: self.admission.upstream,  # read when batching
        )
        self.admission = Admission(
            settings.admission, self.pool, inference_backlog_s=self.models.inference_backlog_s
        )
        self.metrics.watch(self.pool, self.admission)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, models: Sequence[str] | None = None) -> None:
        """Start the decode workers and load the models: by default the settings' default
        model and preloads (what the HTTP service serves); else each of `models` (NAME,
        NAME@VERSION or NAME@ALIAS), loaded and kept loaded. Closes what it started if it
        fails."""
        try:
            await self.pool.start()
            if models is None:
                await self.models.start(self.settings.default_model, self.settings.preload)
            for ref in models or ():
                name, version, alias = parse_model_ref(ref)
                manifest = self.models.store.resolve(name, version=version, alias=alias)
                await self.models.load(manifest.name, manifest.version)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Drain (new requests get 503), let each version's requests finish (up to
        ACTSERVE_DRAIN_TIMEOUT_S), free the versions and stop the decode workers."""
        self.drain()
        await self.models.close()
        await self.pool.close()

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def ready(self) -> bool:
        """The default model is loaded and warmed up, and the engine is not draining."""
        return self.models.ready() and not self.draining

    @property
    def draining(self) -> bool:
        """The drain has begun: `admit` refuses new requests (503)."""
        return self.admission.draining

    @cached_property
    def window_index(self) -> WindowIndex:
        """The search index (ACTSERVE_INDEX_DIR), opened on first use: one handle for the
        routes and the jobs that write into it."""
        search = self.settings.search
        return WindowIndex(search.dir, ann_min_rows=search.ann_min_rows)

    def drain(self) -> None:
        """Begin the drain: from now on `ready` is false and `admit` refuses."""
        self.admission.draining = True

    # ------------------------------------------------------------------ requests

    def resolve(
        self, model: str | None = None, version: int | None = None, alias: str | None = None
    ) -> LoadedModel:
        """The loaded version a request asks for (`ModelNotLoaded` for anything not served,
        `NotReady` with no default model)."""
        return self.models.resolve(model, version, alias)

    def deadline(self) -> float:
        """A request's deadline if it starts now, on the event loop's clock
        (ACTSERVE_REQUEST_TIMEOUT_S)."""
        return asyncio.get_running_loop().time() + self.settings.request_timeout_s

    @contextmanager
    def admit(
        self, loaded: LoadedModel, client: str = "-", *, tensors: bool = False
    ) -> Iterator[Ticket]:
        """A place for a new request, decided before its body is read: `NotReady` (draining)
        or `Overloaded` (uploads or the decode backlog at their bounds; a `tensors` request
        has no upload or decode, so only the drain refuses it). Holds `loaded` until the
        block ends; the ticket counts the request as receiving its body until `received()`."""
        with loaded.lease(), self.admission.admit(client, tensors=tensors) as ticket:
            yield ticket

    async def run_videos(
        self,
        loaded: LoadedModel,
        videos: Sequence[VideoFile | str | os.PathLike[str]],
        options: RunOptions,
        *,
        deadline: float,
        started: float | None = None,
        observe: bool = True,
    ) -> list[VideoRun]:
        """Decode each video into the views `options` ask for and run them through
        `loaded`'s batchers, all videos at once, before `deadline` (the event loop's clock)
        or `DeadlineExceeded`. The first failure cancels the others (their decodes and
        queued views are dropped) and is raised, naming its video when there are several.
        The request's stages go to the metrics (unless `observe` is False: a caller that
        runs one upload twice observes the request once, `observe`); each run's `stages`
        count from `started` (`time.perf_counter()`, default: now) and its own upload.

        Hold `loaded` meanwhile (`admit`, or `loaded.lease()`)."""
        started = time.perf_counter() if started is None else started
        files = [
            v if isinstance(v, VideoFile) else VideoFile(Path(v), os.fspath(v)) for v in videos
        ]
        runs = await _side_by_side(
            [(f.name, self._run_video(loaded, f, options, deadline)) for f in files]
        )
        total_s = time.perf_counter() - started
        runs = [replace(run, stages=replace(run.stages, total_s=total_s)) for run in runs]
        if observe:
            self.observe(loaded, RequestStages.merge([r.stages for r in runs]))
        return runs

    def observe(self, loaded: LoadedModel, stages: RequestStages) -> None:
        """One served request's stages, to the metrics and the request's log line."""
        self.metrics.observe_request(loaded.labels, stages)
        note_stages(stages.milliseconds())

    async def run_tensors(
        self,
        loaded: LoadedModel,
        clips: np.ndarray,
        *,
        deadline: float,
        started: float | None = None,
    ) -> ViewOutputs:
        """Preprocessed views (N, C, T, H, W) float32 through `loaded`'s batcher (with the
        video requests' views), before `deadline`; observed in the metrics like a video
        request (no upload or decode stage). One-network versions only (`BadRequest`).
        Hold `loaded` meanwhile (`admit(..., tensors=True)`)."""
        started = time.perf_counter() if started is None else started
        if len(loaded.streams) != 1:
            raise BadRequest(
                f"{loaded.key} is a two-stream version (rgb + flow); tensors go to "
                "one-network versions: export each stream as a model of its own"
            )
        outputs = await loaded.streams[0].batcher.submit(clips, deadline=deadline)
        total_s = time.perf_counter() - started
        self.metrics.observe_inference(
            loaded.labels, queue_s=outputs.queue_seconds, total_s=total_s, views=len(clips)
        )
        note_stages(
            RequestStages(
                queue_s=outputs.queue_seconds,
                inference_s=outputs.inference_seconds,
                total_s=total_s,
            ).milliseconds()
        )
        return outputs

    # ------------------------------------------------------------------ one video

    async def _run_video(
        self, loaded: LoadedModel, video: VideoFile, options: RunOptions, deadline: float
    ) -> VideoRun:
        run = await self._run_views(loaded, video, options, deadline)
        if options.shots is None:
            return run
        # Each decode job reported the boundaries of its stretch; join them.
        return replace(run, shots=tuple(prune(list(run.decoded.shots or ()), options.shots)))

    async def _run_views(
        self, loaded: LoadedModel, video: VideoFile, options: RunOptions, deadline: float
    ) -> VideoRun:
        profile = options.profile_of(loaded)
        decode_options = DecodeOptions(
            profile=profile, windows=options.per_clip, shots=options.shots
        )
        sliding = loaded.manifest.spec.recipe.sampling == Sampling.SLIDING
        whole_video = options.per_clip or (sliding and profile == Profile.ACCURATE)
        # Any length, a chunk at a time: one RGB network. A two-stream or flow version decodes
        # its windows in one job (bounded by ACTSERVE_MAX_VIEW_BYTES).
        streamable = len(loaded.streams) == 1 and loaded.streams[0].modality == Modality.RGB
        if whole_video and streamable:
            decoded, outputs, decode_s = await classify_windows(
                loaded,
                self.pool,
                video.path,
                decode_options,
                client=options.client,
                deadline=deadline,
            )
            return VideoRun(
                loaded, profile, decoded, outputs, _stages(video, decoded, outputs, decode_s)
            )
        started = time.perf_counter()
        recipes = tuple(s.spec.recipe for s in loaded.manifest.networks())
        if not options.per_clip:  # windows: their count needs the video's length
            check_flow_budget(recipes, profile, self.settings.decode)
        try:
            async with asyncio.timeout_at(deadline):
                decoded = await self.pool.decode_streams(
                    video.path, recipes, decode_options, client=options.client
                )
        except TimeoutError:
            raise DeadlineExceeded(
                "the request's deadline (ACTSERVE_REQUEST_TIMEOUT_S) passed while decoding"
            ) from None
        decode_s = time.perf_counter() - started - decoded[0].wait_s
        per_stream = await _all(
            [
                s.batcher.submit(d.views, deadline=deadline)
                for s, d in zip(loaded.streams, decoded, strict=True)
            ]
        )
        if len(per_stream) == 1:
            return VideoRun(
                loaded,
                profile,
                decoded[0],
                per_stream[0],
                _stages(video, decoded[0], per_stream[0], decode_s),
            )
        fusion = loaded.manifest.fusion
        assert fusion is not None  # a two-stream manifest has its weights
        slower = max(per_stream, key=lambda o: o.queue_seconds + o.inference_seconds)
        outputs = ViewOutputs(
            logits=fuse_logits(
                {s.modality: o.logits for s, o in zip(loaded.streams, per_stream, strict=True)},
                fusion.weights,
            ),
            embedding=np.concatenate([o.embedding for o in per_stream], axis=1),
            # The streams queue and run at once: the request's queue and inference are those
            # of the stream it waited for (their sum is the stage's wall time); each stream's
            # own are in the stages' `streams`.
            queue_seconds=slower.queue_seconds,
            inference_seconds=slower.inference_seconds,
            batches=sum(o.batches for o in per_stream),
        )
        streams = tuple(
            StreamTiming(
                str(s.modality),
                o.queue_seconds,
                o.inference_seconds,
                flow_s=d.flow_s if i else None,
            )
            for i, (s, o, d) in enumerate(zip(loaded.streams, per_stream, decoded, strict=True))
        )
        stages = replace(_stages(video, decoded[0], outputs, decode_s), streams=streams)
        return VideoRun(loaded, profile, decoded[0], outputs, stages)


def flow_fields(recipes: Sequence[Recipe], profile: Profile) -> int:
    """Optical-flow fields a request's plan computes: clips × flow steps of each flow stream."""
    return sum(
        (recipe.num_clips if profile == Profile.ACCURATE else 1)
        * recipe.clip_len
        * recipe.flow_frames_per_stack
        for recipe in recipes
        if recipe.modality == Modality.FLOW
    )


def check_flow_budget(recipes: Sequence[Recipe], profile: Profile, decode: DecodeSettings) -> None:
    """Refuse, before any work, a plan whose flow fields alone would run past the decode
    timeout (the worker would be stopped after the client waited the whole timeout)."""
    fields = flow_fields(recipes, profile)
    needed = fields * decode.flow_field_s
    if not fields or needed <= decode.timeout_s:
        return
    fast = flow_fields(recipes, Profile.FAST)
    fast_s = fast * decode.flow_field_s
    hint = (
        f"ask profile=fast ({fast} fields, ~{fast_s:.0f} s) or "
        if profile != Profile.FAST and fast_s <= decode.timeout_s
        else ""
    )
    raise LimitExceeded(
        "decode_timeout_s",
        needed,
        decode.timeout_s,
        unit="s",
        detail=f" ({fields} optical-flow fields at ~{decode.flow_field_s:g} s each, "
        f"ACTSERVE_FLOW_FIELD_SECONDS); {hint}raise ACTSERVE_DECODE_TIMEOUT_S above "
        f"{needed:.0f} s",
    )


def _stages(
    video: VideoFile, decoded: DecodedVideo, outputs: ViewOutputs, decode_s: float
) -> RequestStages:
    """One video's stages (its `total_s` is set once every video of the request is done)."""
    return RequestStages(
        upload_s=video.upload_s,
        decode_wait_s=decoded.wait_s,
        decode_s=decode_s,
        queue_s=outputs.queue_seconds,
        inference_s=outputs.inference_seconds,
        upload_bytes=video.bytes,
        views=decoded.num_views,
        frames_decoded=decoded.frames_decoded,
    )


async def _all(work: Sequence[Coroutine[Any, Any, T]]) -> list[T]:
    """Await the submissions together; if one fails, the others' views leave the queue."""
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        raise


async def _side_by_side(work: Sequence[tuple[str, Coroutine[Any, Any, T]]]) -> list[T]:
    """Run each video's work at once; the first failure cancels the others (their decodes
    and queued views are dropped) and is raised, naming its video when there are several."""
    tasks = {asyncio.ensure_future(w): name for name, w in work}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task, name in tasks.items():
            if task.done() and task.exception() is not None:
                error = task.exception()
                if isinstance(error, ServiceError) and len(tasks) > 1:
                    error.args = (f"video '{name}': {error}",)
                raise error
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
