"""POST /embed and POST /similarity: the embeddings the model computes, for users who index
videos or compare two of them.

/embed:      admission -> upload -> `pipeline.classify` -> the mean embedding (and each
             window's)
/similarity: admission -> uploads `a` and `b` -> `pipeline.classify` on both, side by side ->
             the cosine of their mean embeddings against the version's threshold

Admission, uploads, the pipeline and the metrics are the ones /classify uses
(`routes.common.classify_uploads`).
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request

from service.deps import OutcomeDep, StateDep
from service.predict import embed_response, similarity_response
from service.routes.common import (
    VIDEO_ERRORS,
    AliasQuery,
    ModelQuery,
    ProfileQuery,
    VersionQuery,
    classify_uploads,
    video_body,
)
from service.schemas import EmbedResponse, SimilarityResponse
from service.upload import VIDEO_FIELD

router = APIRouter(tags=["embeddings"])

PAIR = ("a", "b")


@router.post(
    "/embed",
    response_model=EmbedResponse,
    responses=VIDEO_ERRORS,
    openapi_extra=video_body(VIDEO_FIELD),
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
    loaded = outcome.served_by(state.models.resolve(model, version, alias))
    (classified,), stages = await classify_uploads(
        request,
        state,
        loaded,
        (VIDEO_FIELD,),
        profile=profile,
        per_clip=per_window,
        started=started,
    )
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
    loaded = outcome.served_by(state.models.resolve(model, version, alias))
    (a, b), stages = await classify_uploads(
        request, state, loaded, PAIR, profile=profile, started=started
    )
    return similarity_response(
        a, b, stages, request_id=request.state.request_id, threshold=threshold
    )
