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
from service.routes.common import VIDEO_ERRORS, ProfileQuery, receive_and_run, video_body
from service.schemas import ClassifyResponse
from service.segments import SegmentRule
from service.upload import VIDEO_FIELD
from service.video.shots import ShotRule

router = APIRouter(tags=["classify"])
_SEGMENT_FIELDS = SegmentRule.model_fields


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
            description="One labelled segment per action [{label, start_s, end_s, score}]: "
            "the per_clip windows smoothed, joined across short gaps and shot changes, short "
            "runs dropped (the segment_* parameters; runs the per_clip windows)."
        ),
    ] = False,
    segment_score: Annotated[
        float,
        Query(ge=0.0, le=1.0, description=_SEGMENT_FIELDS["min_score"].description),
    ] = _SEGMENT_FIELDS["min_score"].default,
    segment_smooth: Annotated[
        int, Query(ge=1, le=99, description=_SEGMENT_FIELDS["smooth"].description)
    ] = _SEGMENT_FIELDS["smooth"].default,
    segment_gap_s: Annotated[
        float, Query(ge=0.0, description=_SEGMENT_FIELDS["gap_s"].description)
    ] = _SEGMENT_FIELDS["gap_s"].default,
    segment_min_s: Annotated[
        float, Query(ge=0.0, description=_SEGMENT_FIELDS["min_duration_s"].description)
    ] = _SEGMENT_FIELDS["min_duration_s"].default,
    shots: Annotated[
        bool,
        Query(
            description="Find the shot boundaries (camera cuts) and label each shot "
            "[{shot, start_s, end_s, confidence, kind, top_k}]; segments then weigh the windows "
            "that straddle a cut less (runs the per_clip windows)."
        ),
    ] = False,
) -> ClassifyResponse:
    """Classify the actions in a video."""
    if top_k > engine.settings.max_top_k:
        raise BadRequest(f"top_k is {top_k}; ACTSERVE_MAX_TOP_K is {engine.settings.max_top_k}")
    options = RunOptions(
        profile=profile,
        per_clip=per_clip or segments or shots,
        client=client,
        shots=ShotRule() if shots else None,
    )
    run, windows = await receive_and_run(request, engine, loaded, client, options)
    return classify_response(
        run,
        windows=windows,
        request_id=request.state.request_id,
        top_k=top_k,
        embedding=embedding,
        per_clip=per_clip,
        segments=SegmentRule(
            min_score=segment_score,
            smooth=segment_smooth,
            gap_s=segment_gap_s,
            min_duration_s=segment_min_s,
        )
        if segments
        else None,
    )
