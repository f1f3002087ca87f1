"""The one place the search reads the serving engine: a video upload run through it (as
`POST /embed` does), and a run's per-window and mean embeddings and stage times. Re-point
these functions when the engine's surface changes; nothing else in `service.search` uses it.
"""

from __future__ import annotations

import numpy as np
from fastapi import Request

from service.engine import Engine, RunOptions, VideoRun
from service.loaded_models import LoadedModel
from service.schemas import Timings
from service.scores import mean_embedding
from service.upload import VIDEO_FIELD, receive_uploads, unless_disconnected
from window_index import Windows


async def run_upload(
    request: Request, engine: Engine, loaded: LoadedModel, options: RunOptions
) -> VideoRun:
    """The request's video (multipart `video` or a raw body) through the engine's door,
    upload limits, decode workers and batcher, as `POST /embed` runs it."""
    deadline = engine.deadline()
    with engine.admit(loaded, options.client) as ticket:
        async with receive_uploads(
            request, (VIDEO_FIELD,), engine.settings, deadline=deadline, on_received=ticket.received
        ) as uploads:
            work = engine.run_videos(
                loaded, list(uploads.values()), options, deadline=deadline, started=ticket.started
            )
            (run,) = await unless_disconnected(request, work)
    return run


def video_windows(run: VideoRun, video_id: str, *, uri: str | None = None) -> Windows:
    """Each back-to-back window of a video run with `per_clip` (every window of the video),
    its embedding averaged over the window's views."""
    decoded, embedding = run.decoded, run.outputs.embedding
    views = np.asarray(decoded.view_clip)
    windows = [(n, clip) for n, clip in enumerate(decoded.plan.clips) if (views == n).any()]
    return Windows.of_video(
        video_id,
        [clip.start_s for _, clip in windows],
        [clip.end_s for _, clip in windows],
        np.stack([mean_embedding(embedding[views == n]) for n, _ in windows]),
        uri=uri,
    )


def clip_embedding(run: VideoRun) -> np.ndarray:
    """A query clip's embedding: its views' mean, as `POST /embed` answers it."""
    return mean_embedding(run.outputs.embedding).astype(np.float32)


def stage_timings(run: VideoRun) -> Timings:
    """The run's stage times in ms, as the video routes answer them."""
    return run.stages.to_timings()
