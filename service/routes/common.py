"""What the routes that take a video share: the OpenAPI error table and request body, who
the client is, and dropping a request's work when its client leaves."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import Request

from service.admission import Admission
from service.errors import ClientDisconnected
from service.schemas import ErrorResponse

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
