"""What the routes that take a video share: the OpenAPI error table and request body, who
the client is, dropping a request's work when its client leaves, and the whole path from the
door to the metrics (`classify_uploads`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import Query, Request

from model_store import Profile
from service.admission import Admission
from service.errors import ClientDisconnected, ServiceError
from service.loaded_models import LoadedModel
from service.metrics import RequestStages
from service.pipeline import Classified, ClassifyOptions, classify
from service.schemas import ErrorResponse
from service.upload import receive_uploads

if TYPE_CHECKING:
    from service.deps import AppState

T = TypeVar("T")

VIDEO_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        400: "Malformed parameters or body.",
        404: "Unknown model, version or alias.",
        413: "The upload exceeds max_upload_bytes; reading stopped there.",
        415: "Not a video upload, not a video, or a container/codec outside the allow-lists.",
        422: "The video cannot be decoded, or exceeds a limit (named in the body).",
        429: "Too much work already waiting (uploads, decode backlog or the model's queue); "
        "see Retry-After.",
        503: "The model is not loaded yet, the server is draining, or decoding failed twice "
        "for reasons not the upload's.",
        504: "The request's deadline passed.",
    }.items()
}


ModelQuery = Annotated[str | None, Query(description="Model name; default: the default model.")]
VersionQuery = Annotated[int | None, Query(ge=1, description="A loaded version number.")]
AliasQuery = Annotated[str | None, Query(description="An alias, e.g. stable or canary.")]
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


async def classify_uploads(
    request: Request,
    state: AppState,
    loaded: LoadedModel,
    fields: tuple[str, ...],
    *,
    profile: Profile | None,
    per_clip: bool = False,
    started: float,
) -> tuple[list[Classified], RequestStages]:
    """A video route's path, shared by /classify, /embed and /similarity: admission (429 or
    503 before the body is read), the uploads of `fields` (one field also as a raw body),
    `pipeline.classify` on each video side by side (dropped if the client leaves), and the
    request's stages, recorded in the metrics. `started`: when the route began."""
    settings = state.settings
    deadline = asyncio.get_running_loop().time() + settings.request_timeout_s
    client = client_key(request, state.admission)
    options = ClassifyOptions(profile=profile, per_clip=per_clip, client=client)
    with loaded.lease(), state.admission.admit(client) as ticket:
        async with receive_uploads(
            request,
            fields,
            max_bytes=settings.video.max_upload_bytes,
            idle_timeout_s=settings.http.body_idle_timeout_s,
            deadline=deadline,
            directory=settings.upload_dir,
            on_received=ticket.received,
        ) as uploads:
            work = side_by_side(
                {
                    field: classify(
                        loaded, state.decode_pool, upload.path, options, deadline=deadline
                    )
                    for field, upload in uploads.items()
                }
            )
            results = await unless_disconnected(request, work)
    stages = [
        result.stages(upload_s=upload.seconds, upload_bytes=upload.bytes, total_s=0.0)
        for result, upload in zip(results, uploads.values(), strict=True)
    ]
    merged = RequestStages(
        upload_s=max(s.upload_s for s in stages),
        decode_wait_s=max(s.decode_wait_s for s in stages),
        decode_s=max(s.decode_s for s in stages),
        queue_s=max(s.queue_s for s in stages),
        inference_s=max(s.inference_s for s in stages),
        total_s=time.perf_counter() - started,
        upload_bytes=sum(s.upload_bytes for s in stages),
        views=sum(s.views for s in stages),
        frames_decoded=sum(s.frames_decoded for s in stages),
    )
    state.metrics.observe_request(loaded.labels, merged)
    return results, merged


async def side_by_side(work: dict[str, Coroutine[Any, Any, T]]) -> list[T]:
    """Run each field's work at once; the first failure cancels the others (their decodes
    and queued views are dropped) and is raised, naming its field when there are several."""
    tasks = {asyncio.ensure_future(w): field for field, w in work.items()}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task, field in tasks.items():
            if task.done() and task.exception() is not None:
                error = task.exception()
                if isinstance(error, ServiceError) and len(tasks) > 1:
                    error.args = (f"video '{field}': {error}",)
                raise error
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def client_key(request: Request, admission: Admission) -> str:
    """Who is asking, for the fair sharing of decode workers."""
    peer = request.client.host if request.client else None
    return admission.client_of(request.headers, peer)


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
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
