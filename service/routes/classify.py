"""POST /classify: a video in, top-k actions (and optionally embedding and per-clip scores) out.

upload (streamed to a temp file) -> decode in a worker process (probe, plan, sample,
crop, normalise) -> views join the model version's batcher -> softmax averaged over views
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query, Request

from service.batching import ViewOutputs
from service.deps import AppState, StateDep
from service.errors import BadRequest, ClientDisconnected, DeadlineExceeded
from service.loaded_models import LoadedModel
from service.predict import average_probabilities, per_clip_predictions, top_labels
from service.schemas import (
    ClassifyResponse,
    Embedding,
    ErrorResponse,
    Profile,
    Timings,
    VideoMetadata,
)
from service.upload import receive_upload
from service.video import DecodedVideo, DecodeOptions

router = APIRouter(tags=["classify"])
T = TypeVar("T")

ERRORS = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        400: "Malformed parameters or body.",
        404: "Unknown model, version or alias.",
        413: "The upload exceeds max_upload_bytes; reading stopped there.",
        415: "Not a video upload, not a video, or a container/codec outside the allow-lists.",
        422: "The video cannot be decoded, or exceeds a limit (named in the body).",
        429: "The model's queue is full; see Retry-After.",
        503: "The model is not loaded yet or is draining.",
        504: "The request's deadline passed.",
    }.items()
}

VIDEO_BODY = {
    "requestBody": {
        "required": True,
        "description": "The video: multipart field `video`, or the raw bytes with a video/* "
        "content type.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"video": {"type": "string", "format": "binary"}},
                    "required": ["video"],
                }
            },
            "video/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post(
    "/classify",
    response_model=ClassifyResponse,
    responses=ERRORS,
    openapi_extra=VIDEO_BODY,
)
async def classify_video(
    request: Request,
    state: StateDep,
    model: Annotated[
        str | None, Query(description="Model name; default: the default model.")
    ] = None,
    version: Annotated[int | None, Query(ge=1, description="A loaded version number.")] = None,
    alias: Annotated[str | None, Query(description="An alias, e.g. stable or canary.")] = None,
    top_k: Annotated[int, Query(ge=1, description="Classes to return (≤ ACTSERVE_MAX_TOP_K).")] = 5,
    embedding: Annotated[bool, Query(description="Return the mean embedding.")] = False,
    profile: Annotated[
        Profile | None,
        Query(
            description="fast: 1 clip × centre crop; accurate: the full test "
            "recipe; default: the model's."
        ),
    ] = None,
    per_clip: Annotated[
        bool,
        Query(
            description="Scores for back-to-back clips over the whole video, with "
            "their start and end seconds."
        ),
    ] = False,
) -> ClassifyResponse:
    """Classify the actions in a video."""
    started = time.perf_counter()
    settings, metrics = state.settings, state.metrics
    request_id = request.state.request_id
    if top_k > settings.max_top_k:
        raise BadRequest(f"top_k is {top_k}; ACTSERVE_MAX_TOP_K is {settings.max_top_k}")
    loaded = state.models.resolve(model, version, alias)
    request.state.model_labels = (loaded.manifest.name, str(loaded.manifest.version))
    deadline = asyncio.get_running_loop().time() + settings.request_timeout_s
    with loaded.lease():
        async with receive_upload(
            request, max_bytes=settings.max_upload_bytes, directory=settings.upload_dir
        ) as upload:
            metrics.upload_seconds.observe(upload.seconds)
            metrics.upload_bytes.inc(upload.bytes)
            chosen = profile or loaded.manifest.default_profile
            options = DecodeOptions(profile=chosen, windows=per_clip)
            work = _decode_and_infer(state, loaded, upload.path, options, deadline)
            decoded, outputs, decode_s = await _unless_disconnected(request, work)
    spec = loaded.manifest.spec
    labels = (loaded.manifest.name, str(loaded.manifest.version))
    metrics.decode_seconds.labels(*labels).observe(decode_s)
    metrics.queue_seconds.labels(*labels).observe(outputs.queue_seconds)
    metrics.request_views.labels(*labels).observe(len(decoded.views))
    metrics.decoded_frames.inc(decoded.frames_decoded)
    clips = None
    if per_clip:
        times = [(c.start_s, c.end_s) for c in decoded.plan.clips]
        clips = per_clip_predictions(outputs.logits, decoded.view_clip, times, spec, top_k)
    total = time.perf_counter() - started
    metrics.request_seconds.labels(*labels).observe(total)
    return ClassifyResponse(
        request_id=request_id,
        model=loaded.manifest.name,
        version=loaded.manifest.version,
        profile=chosen,
        top_k=top_labels(average_probabilities(outputs.logits), spec, top_k),
        embedding=Embedding(
            dim=spec.embedding_dim, values=outputs.embedding.mean(0).astype(float).tolist()
        )
        if embedding
        else None,
        clips=clips,
        video=_video_metadata(decoded),
        timings=Timings(
            upload_ms=upload.seconds * 1e3,
            decode_ms=decode_s * 1e3,
            queue_ms=outputs.queue_seconds * 1e3,
            inference_ms=outputs.inference_seconds * 1e3,
            total_ms=total * 1e3,
        ),
    )


async def _decode_and_infer(
    state: AppState, loaded: LoadedModel, path: Path, options: DecodeOptions, deadline: float
) -> tuple[DecodedVideo, ViewOutputs, float]:
    decode_started = time.perf_counter()
    try:
        async with asyncio.timeout_at(deadline):
            decoded = await state.decode_pool.decode(path, loaded.manifest.spec.recipe, options)
    except TimeoutError:
        raise DeadlineExceeded(
            "the request's deadline (ACTSERVE_REQUEST_TIMEOUT_S) passed while decoding"
        ) from None
    decode_s = time.perf_counter() - decode_started
    outputs = await loaded.batcher.submit(decoded.views, deadline=deadline)
    return decoded, outputs, decode_s


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Run `work`, but cancel it (dropping queued decode and inference) if the client
    leaves: once the body is read, the next ASGI message is the disconnect."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise ClientDisconnected("the client closed the connection; its work was dropped")
    finally:
        watcher.cancel()
        task.cancel()


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _video_metadata(decoded: DecodedVideo) -> VideoMetadata:
    info = decoded.info
    height, width = info.display_size
    return VideoMetadata(
        container=info.container,
        codec=info.codec,
        width=width,
        height=height,
        fps=info.fps or None,
        duration_s=info.duration_s or None,
        frames_decoded=decoded.frames_decoded,
        clips=len(decoded.plan.clips),
        views=len(decoded.views),
        warnings=list(decoded.warnings),
    )
