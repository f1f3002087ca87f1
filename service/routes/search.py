"""POST /index, POST /search and the index's listing and deletes: the window index
(`window_index`) over HTTP.

/index:   admission -> upload -> `pipeline.classify` over every window (as /embed?per_window)
          -> the windows' embeddings into the table of the model version's embedding space
/search:  a query clip (uploaded: embedded as /embed does), a stored window (`video_id` and
          `at_s`), or, with neither, a probe-trained version's classes over every stored
          window of its base model (no decoding) -> moments
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request

from model_store import Manifest
from service.deps import (
    AliasQuery,
    ClientDep,
    EngineDep,
    ModelQuery,
    OutcomeDep,
    SettingsDep,
    VersionQuery,
)
from service.engine import Engine, RunOptions
from service.errors import BadRequest, openapi_errors
from service.routes.common import VIDEO_ERRORS, ProfileQuery, video_body
from service.schemas import ErrorResponse
from service.search import queries
from service.search.embeddings import clip_embedding, run_upload, stage_timings, video_windows
from service.search.schemas import (
    DeleteResponse,
    IndexedVersion,
    IndexListing,
    IndexResponse,
    MomentOut,
    Removed,
    SearchResponse,
    SearchTimings,
)
from service.search.spaces import space_of
from service.upload import VIDEO_FIELD
from window_index import (
    Filters,
    InvalidQuery,
    Moment,
    NotIndexed,
    Space,
    WindowIndex,
    WrongSpace,
    check_video_id,
)

router = APIRouter(tags=["search"])
logger = logging.getLogger("actserve")

#: The video routes' answers, and the index's own refusals (400, 404, 409).
INDEX_ERRORS = VIDEO_ERRORS | {
    status: {
        "model": ErrorResponse,
        "description": " ".join(
            filter(None, (VIDEO_ERRORS.get(status, {}).get("description"), row["description"]))
        ),
    }
    for status, row in openapi_errors(ErrorResponse, InvalidQuery, NotIndexed, WrongSpace).items()
}

VideoIdQuery = Annotated[
    str,
    Query(
        min_length=1,
        max_length=1024,
        description="The video's id in the index (a path, a URI, your own key); indexing it "
        "again replaces its windows.",
    ),
]


def get_index(request: Request) -> WindowIndex:
    """The engine's window index, opened on first use (ACTSERVE_INDEX_DIR)."""
    return request.app.state.engine.window_index


@router.post(
    "/index",
    response_model=IndexResponse,
    responses=INDEX_ERRORS,
    openapi_extra=video_body(VIDEO_FIELD),
)
async def index_video(
    request: Request,
    engine: EngineDep,
    outcome: OutcomeDep,
    client: ClientDep,
    video_id: VideoIdQuery,
    model: ModelQuery = None,
    version: VersionQuery = None,
    alias: AliasQuery = None,
    profile: ProfileQuery = None,
    uri: Annotated[
        str | None, Query(max_length=4096, description="Where the video lives, kept with it.")
    ] = None,
) -> IndexResponse:
    """Embed every back-to-back window of the uploaded video and store them under
    `video_id`, in the index of the model version's embeddings."""
    check_video_id(video_id)
    loaded = outcome.served_by(engine.resolve(model, version, alias))
    options = RunOptions(profile=profile, per_clip=True, client=client)
    run = await run_upload(request, engine, loaded, options)
    manifest = loaded.manifest
    windows = video_windows(run, video_id, uri=uri)
    index = get_index(request)
    space, count = await asyncio.to_thread(
        queries.index_windows,
        index,
        manifest,
        windows,
        video_id=video_id,
        profile=str(run.profile),
    )
    _optimize_later(request, index, space)
    return IndexResponse(
        request_id=request.state.request_id,
        video_id=video_id,
        model=manifest.name,
        version=manifest.version,
        index=str(space),
        windows=count,
        duration_s=run.decoded.info.duration_s or None,
        timings=stage_timings(run),
    )


@router.post(
    "/search",
    response_model=SearchResponse,
    responses=INDEX_ERRORS,
    openapi_extra={
        "requestBody": {
            **video_body(VIDEO_FIELD)["requestBody"],
            "required": False,
            "description": "A query clip (multipart field `video` or a raw video/* body); "
            "leave the body empty to search by a stored window or by a probe's classes.",
        }
    },
)
async def search(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    outcome: OutcomeDep,
    client: ClientDep,
    model: ModelQuery = None,
    version: VersionQuery = None,
    alias: AliasQuery = None,
    profile: ProfileQuery = None,
    top_k: Annotated[int, Query(ge=1, description="Moments to return.")] = 10,
    video_id: Annotated[
        str | None,
        Query(max_length=1024, description="Search by this indexed video's window at `at_s`."),
    ] = None,
    at_s: Annotated[
        float | None, Query(ge=0, description="The query window's time in `video_id`, seconds.")
    ] = None,
    label: Annotated[
        list[str] | None,
        Query(description="Class search: the probe's classes to find (default: its new ones)."),
    ] = None,
    threshold: Annotated[
        float | None,
        Query(
            ge=0.0,
            le=1.0,
            description="Class search: the lowest class probability kept (default 0.5); an "
            "open-set probe also drops the windows it calls unknown.",
        ),
    ] = None,
    in_video: Annotated[
        list[str] | None, Query(description="Only moments of these videos (repeatable).")
    ] = None,
    from_s: Annotated[
        float | None, Query(ge=0, description="Only windows that end after this second.")
    ] = None,
    to_s: Annotated[
        float | None, Query(gt=0, description="Only windows that start before this second.")
    ] = None,
) -> SearchResponse:
    """Moments of the indexed videos: like a query clip, like a stored window, or of a
    probe-trained version's classes; adjacent windows merged, best first."""
    started = time.perf_counter()
    if top_k > settings.search.max_top_k:
        raise BadRequest(f"top_k {top_k} is over the limit of {settings.search.max_top_k}")
    filters = Filters(tuple(in_video) if in_video else None, from_s, to_s)
    filters.where()  # a malformed filter is refused before any upload is read
    index = get_index(request)
    reply = {"request_id": request.state.request_id}
    embed_timings = None
    if _has_body(request):
        if video_id is not None or label:
            raise BadRequest("send a query clip, or a video_id and at_s, or labels: one of them")
        loaded = outcome.served_by(engine.resolve(model, version, alias))
        run = await run_upload(request, engine, loaded, RunOptions(profile=profile, client=client))
        manifest = loaded.manifest
        embed_timings = stage_timings(run)
        searching = time.perf_counter()
        found = await asyncio.to_thread(
            queries.like_vector,
            index,
            manifest,
            clip_embedding(run),
            top_k=top_k,
            filters=filters,
        )
        reply |= {"query": "clip"}
    elif video_id is not None:
        if at_s is None:
            raise BadRequest("a window query needs at_s: the second of video_id to search by")
        manifest = _manifest(engine, model, version, alias)
        searching = time.perf_counter()
        found, window = await asyncio.to_thread(
            queries.like_window, index, manifest, video_id, at_s, top_k=top_k, filters=filters
        )
        reply |= {"query": "window", "window": window}
    else:
        manifest = _manifest(engine, model, version, alias)
        if manifest.probe is None:
            raise BadRequest(
                "nothing to search by: upload a query clip, give video_id and at_s, or name a "
                "probe-trained version (model=...) to find its classes"
            )
        searching = time.perf_counter()
        found, labels, used, scored = await asyncio.to_thread(
            queries.of_classes,
            index,
            engine.models.store,
            manifest,
            top_k=top_k,
            labels=label,
            threshold=threshold,
            filters=filters,
        )
        reply |= {
            "query": "classes",
            "labels": list(labels),
            "threshold": used,
            "windows_scored": scored,
        }
    done = time.perf_counter()
    return SearchResponse(
        **reply,
        model=manifest.name,
        version=manifest.version,
        index=str(space_of(manifest)),
        moments=[_moment(m) for m in found],
        timings=SearchTimings(
            embed=embed_timings,
            search_ms=(done - searching) * 1e3,
            total_ms=(done - started) * 1e3,
        ),
    )


@router.get("/index", response_model=IndexListing)
async def list_index(request: Request, settings: SettingsDep) -> IndexListing:
    """Every model version with windows in the index, with its window and video counts."""
    index = get_index(request)

    def listing() -> list[IndexedVersion]:
        return [
            IndexedVersion(
                model=space.model,
                version=space.version,
                windows=count,
                videos=len(index.videos(space)),
            )
            for space, count in index.spaces().items()
        ]

    return IndexListing(dir=str(settings.search.dir), indexes=await asyncio.to_thread(listing))


@router.delete("/index/videos/{video_id:path}", response_model=DeleteResponse)
async def delete_video(
    request: Request,
    video_id: str,
    model: Annotated[
        str | None, Query(description="Only from this model's index (with `version`).")
    ] = None,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> DeleteResponse:
    """Remove a video's windows from the index (every model version's, unless named)."""
    if (model is None) != (version is None):
        raise BadRequest("name both model and version, or neither")
    space = Space(model, version) if model is not None and version is not None else None
    removed = await asyncio.to_thread(get_index(request).delete_video, video_id, space)
    if not removed:
        raise NotIndexed(f"video {video_id!r} has no windows in the index")
    return DeleteResponse(video_id=video_id, removed=_removed(removed))


@router.delete("/index/models/{model}/versions/{version}", response_model=DeleteResponse)
async def drop_version(request: Request, model: str, version: int) -> DeleteResponse:
    """Remove every window of one model version: the explicit end of an index once the
    archive is indexed again with a newer version."""
    space = Space(model, version)
    count = await asyncio.to_thread(get_index(request).drop, space)
    return DeleteResponse(removed=_removed({space: count}))


def _removed(counts: dict[Space, int]) -> list[Removed]:
    return [Removed(model=s.model, version=s.version, windows=n) for s, n in counts.items()]


def _moment(moment: Moment) -> MomentOut:
    return MomentOut(
        video_id=moment.video_id,
        start_s=moment.start_s,
        end_s=moment.end_s,
        score=moment.score,
        windows=moment.windows,
        label=moment.label,
    )


def _manifest(
    engine: Engine, model: str | None, version: int | None, alias: str | None
) -> Manifest:
    """The store's manifest of the version a query names (it need not be loaded: a window
    or class search runs no network)."""
    if model is None and version is None and alias is None:
        return engine.resolve().manifest
    name = model or engine.models.default_model
    return engine.models.store.resolve(name, version=version, alias=alias)


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return (length is not None and length != "0") or "transfer-encoding" in request.headers


#: Writes to the index between two compactions (`WindowIndex.optimize`) by the service.
WRITES_PER_OPTIMIZE = 50


def _optimize_later(request: Request, index: WindowIndex, space: Space) -> None:
    """Every `WRITES_PER_OPTIMIZE` writes, compact the version's table and build or extend
    its ANN index in the background (one at a time per app; searches go on meanwhile)."""
    app_state = request.app.state
    writes = getattr(app_state, "index_writes", 0) + 1
    app_state.index_writes = writes
    running = getattr(app_state, "index_build", None)
    if writes % WRITES_PER_OPTIMIZE or (running is not None and not running.done()):
        return
    build = asyncio.ensure_future(asyncio.to_thread(index.optimize, space))
    build.add_done_callback(_log_failure)
    app_state.index_build = build


def _log_failure(build: asyncio.Future) -> None:
    if not build.cancelled() and build.exception() is not None:
        logger.error("building the window index failed: %s", build.exception())
