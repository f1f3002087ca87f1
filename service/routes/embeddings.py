"""POST /embed and POST /similarity: the embeddings the model computes, for users who index
videos or compare two of them.

/embed:      admission -> upload -> `pipeline.classify` -> the mean embedding (and each
             window's)
/similarity: admission -> uploads `a` and `b` -> `pipeline.classify` on both, side by side ->
             the cosine of their mean embeddings against the version's threshold

Admission, uploads and the pipeline are the ones /classify uses (service/routes/classify.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from service.deps import OutcomeDep, StateDep
from service.errors import ServiceError
from service.metrics import RequestStages
from service.pipeline import Classified, ClassifyOptions, classify
from service.predict import embed_response, similarity_response
from service.routes.common import (
    VIDEO_ERRORS,
    client_key,
    unless_disconnected,
    video_body,
)
from service.schemas import EmbedResponse, Profile, SimilarityResponse
from service.upload import receive_upload, receive_uploads

router = APIRouter(tags=["embeddings"])

ModelQuery = Annotated[str | None, Query(description="Model name; default: the default model.")]
VersionQuery = Annotated[int | None, Query(ge=1, description="A loaded version number.")]
AliasQuery = Annotated[str | None, Query(description="An alias, e.g. stable or canary.")]
ProfileQuery = Annotated[
    Profile | None,
    Query(
        description="fast: 1 clip × centre crop; accurate: the full test recipe; default: the "
        "model's."
    ),
]
PAIR = ("a", "b")


@router.post(
    "/embed",
    response_model=EmbedResponse,
    responses=VIDEO_ERRORS,
    openapi_extra=video_body("video"),
)
async def embed_video(
    request: Request,
    state: StateDep,
    outcome: OutcomeDep,
    model: ModelQuery = None,
    version: VersionQuery = None,
    alias: AliasQuery = None,
    profile: ProfileQuery = None,
    per_window: Annotated[
        bool,
        Query(
            description="Also each back-to-back window's embedding over the whole video, with "
            "its start and end seconds (the windows of `per_clip` in /classify)."
        ),
    ] = False,
) -> EmbedResponse:
    """The video's float32 embedding: the model's pooled features averaged over its views."""
    started = time.perf_counter()
    settings = state.settings
    loaded = outcome.served_by(state.models.resolve(model, version, alias))
    deadline = asyncio.get_running_loop().time() + settings.request_timeout_s
    client = client_key(request, state.admission)
    options = ClassifyOptions(profile=profile, per_clip=per_window, client=client)
    with loaded.lease(), state.admission.admit(client) as ticket:
        async with receive_upload(
            request,
            max_bytes=settings.video.max_upload_bytes,
            directory=settings.upload_dir,
            on_received=ticket.received,
        ) as upload:
            work = classify(loaded, state.decode_pool, upload.path, options, deadline=deadline)
            classified = await unless_disconnected(request, work)
    stages = classified.stages(
        upload_s=upload.seconds,
        upload_bytes=upload.bytes,
        total_s=time.perf_counter() - started,
    )
    state.metrics.observe_request(loaded.labels, stages)
    return embed_response(
        classified, stages, request_id=request.state.request_id, per_window=per_window
    )


@router.post(
    "/similarity",
    response_model=SimilarityResponse,
    responses=VIDEO_ERRORS,
    openapi_extra=video_body(*PAIR),
)
async def compare_videos(
    request: Request,
    state: StateDep,
    outcome: OutcomeDep,
    model: ModelQuery = None,
    version: VersionQuery = None,
    alias: AliasQuery = None,
    profile: ProfileQuery = None,
    threshold: Annotated[
        float | None,
        Query(
            ge=-1.0,
            le=1.0,
            description="Decide `same_action` at this cosine instead of the version's "
            "calibrated threshold (or the default, 0.8).",
        ),
    ] = None,
) -> SimilarityResponse:
    """How alike the actions of two videos are: the cosine similarity of their mean
    embeddings, and whether it reaches the threshold for the same action."""
    started = time.perf_counter()
    settings = state.settings
    loaded = outcome.served_by(state.models.resolve(model, version, alias))
    deadline = asyncio.get_running_loop().time() + settings.request_timeout_s
    client = client_key(request, state.admission)
    options = ClassifyOptions(profile=profile, client=client)
    with loaded.lease(), state.admission.admit(client) as ticket:
        async with receive_uploads(
            request,
            PAIR,
            max_bytes=settings.video.max_upload_bytes,
            directory=settings.upload_dir,
            on_received=ticket.received,
        ) as uploads:
            work = both(
                {
                    field: classify(
                        loaded, state.decode_pool, upload.path, options, deadline=deadline
                    )
                    for field, upload in uploads.items()
                }
            )
            a, b = await unless_disconnected(request, work)
    stages = side_by_side(
        a,
        b,
        upload_s=uploads["a"].seconds,
        upload_bytes=sum(u.bytes for u in uploads.values()),
        total_s=time.perf_counter() - started,
    )
    state.metrics.observe_request(loaded.labels, stages)
    return similarity_response(
        a, b, stages, request_id=request.state.request_id, threshold=threshold
    )


async def both(work: dict[str, Coroutine[Any, Any, Classified]]) -> list[Classified]:
    """Run each field's work side by side; the first failure cancels the other (its decode
    and queued views are dropped) and is raised with the field named in its message."""
    tasks = {asyncio.ensure_future(w): field for field, w in work.items()}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task, field in tasks.items():
            if task.done() and task.exception() is not None:
                error = task.exception()
                if isinstance(error, ServiceError):
                    error.args = (f"video '{field}': {error}",)
                raise error
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def side_by_side(
    a: Classified, b: Classified, *, upload_s: float, upload_bytes: int, total_s: float
) -> RequestStages:
    """One request's stages from two videos processed at once: the slower one's times, both
    ones' work."""
    first, second = (
        c.stages(upload_s=upload_s, upload_bytes=upload_bytes, total_s=total_s) for c in (a, b)
    )
    return RequestStages(
        upload_s=upload_s,
        decode_wait_s=max(first.decode_wait_s, second.decode_wait_s),
        decode_s=max(first.decode_s, second.decode_s),
        queue_s=max(first.queue_s, second.queue_s),
        inference_s=max(first.inference_s, second.inference_s),
        total_s=total_s,
        upload_bytes=upload_bytes,
        views=first.views + second.views,
        frames_decoded=first.frames_decoded + second.frames_decoded,
    )
