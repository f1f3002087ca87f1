"""POST /embed and POST /similarity: the embeddings the model computes, for users who index
videos or compare two of them.

/embed:      `engine.admit` -> upload -> `engine.run_videos` -> the mean embedding (and each
             window's)
/similarity: `engine.admit` -> uploads `a` and `b` -> `engine.run_videos` on both, side by
             side -> the cosine of their mean embeddings against the version's threshold

The door, uploads, engine and metrics are the ones /classify uses.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from service.deps import ClientDep, EngineDep, LoadedDep
from service.engine import RunOptions
from service.responses import embed_response, similarity_response
from service.routes.common import VIDEO_ERRORS, ProfileQuery, receive_and_run, video_body
from service.schemas import EmbedResponse, SimilarityResponse
from service.upload import VIDEO_FIELD, receive_uploads, unless_disconnected

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
    engine: EngineDep,
    loaded: LoadedDep,
    client: ClientDep,
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
    options = RunOptions(profile=profile, per_clip=per_window, client=client)
    run, windows = await receive_and_run(request, engine, loaded, client, options)
    return embed_response(
        run, request_id=request.state.request_id, per_window=per_window, windowed=windows
    )


@router.post(
    "/similarity",
    response_model=SimilarityResponse,
    responses=VIDEO_ERRORS,
    openapi_extra=video_body(*PAIR),
)
async def compare_videos(
    request: Request,
    engine: EngineDep,
    loaded: LoadedDep,
    client: ClientDep,
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
    options = RunOptions(profile=profile, client=client)
    deadline = engine.deadline()
    with engine.admit(loaded, client) as ticket:
        async with receive_uploads(
            request, PAIR, engine.settings, deadline=deadline, on_received=ticket.received
        ) as uploads:
            work = engine.run_videos(
                loaded, list(uploads.values()), options, deadline=deadline, started=ticket.started
            )
            a, b = await unless_disconnected(request, work)
    return similarity_response(a, b, request_id=request.state.request_id, threshold=threshold)
