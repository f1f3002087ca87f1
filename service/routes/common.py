"""What the routes that take a video share: their OpenAPI error table and request body, and
the `profile` parameter."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query

from model_store import Profile
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
from service.schemas import ErrorResponse

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
