"""POST /classify: a video in, top-k actions (and optionally embedding and per-clip scores) out.

admission (429/503 before the body is read) -> upload (streamed to a temp file) ->
`pipeline.classify` (decode in a worker, views through the model version's batcher) ->
softmax averaged over views (`routes.common.classify_uploads` up to the metrics)
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request

from service.deps import OutcomeDep, StateDep
from service.errors import BadRequest
from service.predict import classify_response
from service.routes.common import (
    VIDEO_ERRORS,
    AliasQuery,
    ModelQuery,
    ProfileQuery,
    VersionQuery,
    classify_uploads,
    video_body,
)
from service.schemas import ClassifyResponse
from service.upload import VIDEO_FIELD

router = APIRouter(tags=["classify"])


@router.post(
    "/classify",
    response_model=ClassifyResponse,
    responses=VIDEO_ERRORS,
    openapi_extra=video_body(VIDEO_FIELD),
)
async def classify_video(
    request: Request,
    state: StateDep,
    outcome: OutcomeDep,
    model: ModelQuery = None,
    version: VersionQuery = None,
    alias: AliasQuery = None,
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
    started = time.perf_counter()
    settings = state.settings
    if top_k > settings.max_top_k:
        raise BadRequest(f"top_k is {top_k}; ACTSERVE_MAX_TOP_K is {settings.max_top_k}")
    loaded = outcome.served_by(state.models.resolve(model, version, alias))
    (classified,), stages = await classify_uploads(
        request,
        state,
        loaded,
        (VIDEO_FIELD,),
        profile=profile,
        per_clip=per_clip or segments,
        started=started,
    )
    return classify_response(
        classified,
        stages,
        request_id=request.state.request_id,
        top_k=top_k,
        embedding=embedding,
        per_clip=per_clip,
        segment_score=segment_score if segments else None,
    )
