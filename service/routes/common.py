"""What the routes that take a video share: their OpenAPI error table and request body, and
the `profile` parameter."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Query, Request

from model_store import Profile, Sampling
from service.errors import (
    BadRequest,
    ContainerNotAllowed,
    DeadlineExceeded,
    LimitExceeded,
    ModelNotLoaded,
    NotAVideo,
    NotReady,
    Overloaded,
    RequestTimeout,
    UnsupportedCodec,
    UnsupportedMediaType,
    UploadTooLarge,
    VideoError,
    WorkerCrashed,
    openapi_errors,
)
from service.metrics import RequestStages
from service.schemas import ErrorResponse
from service.upload import VIDEO_FIELD, receive_uploads, unless_disconnected

if TYPE_CHECKING:
    from service.engine import Engine, RunOptions, VideoFile, VideoRun
    from service.loaded_models import LoadedModel

#: What a video route answers besides 200, from the errors' own table and docstrings.
VIDEO_ERRORS = openapi_errors(
    ErrorResponse,
    BadRequest,
    ModelNotLoaded,
    RequestTimeout,
    UploadTooLarge,
    UnsupportedMediaType,
    NotAVideo,
    ContainerNotAllowed,
    UnsupportedCodec,
    VideoError,
    LimitExceeded,
    Overloaded,
    NotReady,
    WorkerCrashed,
    DeadlineExceeded,
)

ProfileQuery = Annotated[
    Profile | None,
    Query(
        description="accurate: the model's test protocol (for a registered family, its "
        "reference code's); fast: 1 clip × centre crop, actserve's own low-latency profile; "
        "default: the model's."
    ),
]


def video_body(*fields: str) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads videos from multipart `fields` (or one
    video as the raw body)."""
    raw = (
        {"video/*": {"schema": {"type": "string", "format": "binary"}}} if len(fields) == 1 else {}
    )
    return {
        "requestBody": {
            "required": True,
            "description": "The video: multipart field `video`, or the raw bytes with a video/* "
            "content type."
            if raw
            else f"The videos: multipart fields {', '.join(f'`{f}`' for f in fields)}.",
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {f: {"type": "string", "format": "binary"} for f in fields},
                        "required": list(fields),
                    }
                },
                **raw,
            },
        }
    }


async def receive_and_run(
    request: Request,
    engine: Engine,
    loaded: LoadedModel,
    client: str,
    options: RunOptions,
) -> tuple[VideoRun, VideoRun]:
    """A one-video route's path: the door (429/503 before the body is read), the upload,
    then `answer_and_windows` on it, stopped if the client leaves."""
    deadline = engine.deadline()
    with engine.admit(loaded, client) as ticket:
        async with receive_uploads(
            request, (VIDEO_FIELD,), engine.settings, deadline=deadline, on_received=ticket.received
        ) as uploads:
            work = answer_and_windows(
                engine,
                loaded,
                list(uploads.values()),
                options,
                deadline=deadline,
                started=ticket.started,
            )
            return await unless_disconnected(request, work)


async def answer_and_windows(
    engine: Engine,
    loaded: LoadedModel,
    videos: list[VideoFile],
    options: RunOptions,
    *,
    deadline: float,
    started: float,
) -> tuple[VideoRun, VideoRun]:
    """The run whose views give the video-level answer (the profile's own), and the run of
    back-to-back windows when `options.per_clip` asks for them: asking for more detail never
    changes the main answer. Both run at once on the one upload; when the profile's views are
    the windows already (a sliding-window protocol's accurate profile), one run serves both."""
    if not options.per_clip:
        (run,) = await engine.run_videos(
            loaded, videos, options, deadline=deadline, started=started
        )
        return run, run
    sliding = loaded.manifest.spec.recipe.sampling == Sampling.SLIDING
    if sliding and options.profile_of(loaded) == Profile.ACCURATE:
        (run,) = await engine.run_videos(
            loaded, videos, options, deadline=deadline, started=started
        )
        return run, run
    profile_views = replace(options, per_clip=False, shots=None)  # the windows run scans
    tasks = [
        asyncio.ensure_future(
            engine.run_videos(loaded, videos, o, deadline=deadline, started=started, observe=False)
        )
        for o in (profile_views, options)
    ]
    try:
        (answer,), (windows,) = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:  # one failed (or the client left): drop the other's work
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    # One request: its upload once, the two runs' decode and inference work together.
    engine.observe(
        loaded, RequestStages.merge([answer.stages, replace(windows.stages, upload_bytes=0)])
    )
    return answer, windows
