"""POST /classify: a video in, top-k actions (and optionally embedding and per-clip scores) out.

the version (`LoadedDep`) -> `engine.admit` (429/503 before the body is read) -> the upload
(streamed to a temp file) -> `engine.run_videos` (decode in a worker, views through the
version's batcher, the metrics) -> `responses.classify_response` (softmax averaged over views)
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from service.deps import ClientDep, EngineDep, LoadedDep
from service.engine import RunOptions
from service.errors import BadRequest
from service.responses import classify_response
from service.routes.common import VIDEO_ERRORS, ProfileQuery, video_body
from service.schemas import ClassifyResponse
from service.upload import VIDEO_FIELD, receive_uploads, unless_disconnected

router = APIRouter(tags=["classify"])


@router.post(
    "/classify",
    response_model=ClassifyResponse,
    responses=VIDEO_ERRORS,
    openapi_extra=video_body(VIDEO_FIELD),
)
async def classify_video(
    request: Request,
    engine: EngineDep,
    loaded: LoadedDep,
    client: ClientDep,
    top_k: Annotated[int, Query(ge=1, description="Classes to return (≤ ACTSERVE_MAX_TOP_K).")] = 5,
    embedding: Annotated[bool, Query(description="Return the mean embedding.")] = False,
    profile: ProfileQuery = None,
    per_clip: Annotated[
        bool,
        Query(
            description="Scores for back-to-back clips over the whole video, with "
            "their start and end seconds (any length up to ACTSERVE_MAX_DURATION_S)."
        ),
    ] = False,
    segments: Annotated[
        bool,
        Query(
            description="Merge consecutive windows whose top-1 action agrees into labelled "
            "segments [{label, start_s, end_s, score}] (runs the per_clip windows)."
        ),
    ] = False,
    segment_score: Annotated[
        float,
        Query(
            ge=0.0,
            le=1.0,
            description="With `segments`: the top-1 probability a window needs to belong to a "
            "segment (below it, the window ends the segment and starts none).",
        ),
    ] = 0.5,
) -> ClassifyResponse:
    """Classify the actions in a video."""
    if top_k > engine.settings.max_top_k:
        raise BadRequest(f"top_k is {top_k}; ACTSERVE_MAX_TOP_K is {engine.settings.max_top_k}")
    options = RunOptions(profile=profile, per_clip=per_clip or segments, client=client)
    deadline = engine.deadline()
    with engine.admit(loaded, client) as ticket:
        async with receive_uploads(
            request, (VIDEO_FIELD,), engine.settings, deadline=deadline, on_received=ticket.received
        ) as uploads:
            work = engine.run_videos(
                loaded, list(uploads.values()), options, deadline=deadline, started=ticket.started
            )
            (run,) = await unless_disconnected(request, work)
    return classify_response(
        run,
        request_id=request.state.request_id,
        top_k=top_k,
        embedding=embedding,
        per_clip=per_clip,
        segment_score=segment_score if segments else None,
    )
