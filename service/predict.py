"""From per-view outputs to what a client reads: averaged probabilities, top-k labels, the
mean embedding, per-clip scores, and the whole /classify answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from model_store import ModelSpec
from service.metrics import RequestStages
from service.schemas import (
    ClassifyResponse,
    ClipPrediction,
    Embedding,
    LabelScore,
    StreamTimings,
    Timings,
    VideoMetadata,
)
from service.video import DecodedVideo

if TYPE_CHECKING:
    from service.pipeline import Classified


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def top_labels(probabilities: np.ndarray, spec: ModelSpec, k: int) -> list[LabelScore]:
    """The k most probable classes of a (K,) probability vector, best first."""
    k = min(k, len(probabilities))
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [
        LabelScore(label=spec.label_of(int(i)), index=int(i), score=float(probabilities[i]))
        for i in order
    ]


def average_probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax per view, then the mean over views (mmaction2's `average_clips='prob'`)."""
    return softmax(logits).mean(axis=0)


def per_clip_predictions(
    logits: np.ndarray,
    clip_of_view: Sequence[int],
    clip_times: Sequence[tuple[float, float]],
    spec: ModelSpec,
    k: int,
) -> list[ClipPrediction]:
    """Scores of each clip (its crops averaged) with the clip's start and end in seconds."""
    probabilities = softmax(logits)
    views = np.asarray(clip_of_view)
    clips = []
    for clip, (start, end) in enumerate(clip_times):
        mine = probabilities[views == clip]
        if len(mine):
            clips.append(
                ClipPrediction(
                    clip=clip, start_s=start, end_s=end, top_k=top_labels(mine.mean(0), spec, k)
                )
            )
    return clips


def classify_response(
    classified: Classified,
    stages: RequestStages,
    *,
    request_id: str,
    top_k: int,
    embedding: bool,
    per_clip: bool,
) -> ClassifyResponse:
    manifest, outputs, decoded = classified.loaded.manifest, classified.outputs, classified.decoded
    spec = manifest.spec
    clips = None
    if per_clip:
        times = [(c.start_s, c.end_s) for c in decoded.plan.clips]
        clips = per_clip_predictions(outputs.logits, decoded.view_clip, times, spec, top_k)
    mean = outputs.embedding.mean(0).astype(float).tolist() if embedding else None
    return ClassifyResponse(
        request_id=request_id,
        model=manifest.name,
        version=manifest.version,
        profile=classified.profile,
        top_k=top_labels(average_probabilities(outputs.logits), spec, top_k),
        embedding=Embedding(dim=spec.embedding_dim, values=mean) if mean is not None else None,
        clips=clips,
        video=video_metadata(decoded),
        timings=Timings(
            upload_ms=stages.upload_s * 1e3,
            decode_wait_ms=stages.decode_wait_s * 1e3,
            decode_ms=stages.decode_s * 1e3,
            queue_ms=stages.queue_s * 1e3,
            inference_ms=stages.inference_s * 1e3,
            total_ms=stages.total_s * 1e3,
            streams=stream_timings(classified),
        ),
    )


def stream_timings(classified: Classified) -> dict[str, StreamTimings] | None:
    if classified.streams is None:
        return None
    return {
        str(modality): StreamTimings(
            queue_ms=timing.queue_s * 1e3,
            inference_ms=timing.inference_s * 1e3,
            flow_ms=timing.flow_s * 1e3 if modality == "flow" else None,
        )
        for modality, timing in classified.streams.items()
    }


def video_metadata(decoded: DecodedVideo) -> VideoMetadata:
    info = decoded.info
    height, width = info.display_size
    return VideoMetadata(
        container=info.container,
        codec=info.codec,
        width=width,
        height=height,
        fps=info.fps or None,
        duration_s=info.duration_s or None,
        frames_decoded=decoded.frames_decoded,
        clips=len(decoded.plan.clips),
        views=len(decoded.views),
        keyframe_snap_s=decoded.plan.snap_s,
        warnings=list(decoded.warnings),
    )
