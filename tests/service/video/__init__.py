"""Tests of the video intake (service/video/)."""

from __future__ import annotations

import os

from model_store.spec import Recipe
from service.video import DecodedVideo, DecodeOptions, DecodePool


async def decode(
    pool: DecodePool,
    path: str | os.PathLike[str],
    recipe: Recipe,
    options: DecodeOptions | None = None,
    *,
    client: str = "-",
) -> DecodedVideo:
    """One recipe's views of `path`, decoded by `pool`."""
    (video,) = await pool.decode_streams(path, (recipe,), options, client=client)
    return video
