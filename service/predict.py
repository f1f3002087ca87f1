"""From per-view outputs to what a client reads: averaged probabilities, top-k labels, the
mean embedding, per-clip scores and embeddings, the cosine similarity of two videos, and the
whole /classify, /embed and /similarity answers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from model_store import Manifest, ModelSpec
from service.metrics import RequestStages
from service.schemas import (
    ClassifyResponse,
    ClipPrediction,
    Embedding,
    EmbedResponse,
    LabelScore,
    Segment,
    SimilarityResponse,
    StreamTimings,
    Timings,
    VideoMetadata,
    WindowEmbedding,
)
from service.video import DecodedVideo

if TYPE_CHECKING:
    from service.pipeline import Classified

#: `POST /similarity`'s threshold for a version without a calibrated one (`actserve probe`
#: calibrates it): the demo model's same-action pairs score 0.88-0.99, different ones 0.18-0.47.
DEFAULT_SIMILARITY_THRESHOLD = 0.8


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


def merge_segments(clips: Sequence[ClipPrediction], min_score: float) -> list[Segment]:
    """Runs of consecutive windows whose top-1 label is the same and scores at least
    `min_score`, each as one labelled segment from its first window's start to its last
    window's end. A window below `min_score` belongs to no segment (the action is unclear
    there), so it also ends the run before it."""
    segments: list[Segment] = []
    run: list[LabelScore] = []
    start = end = 0.0

    def close() -> None:
        if run:
            segments.append(
                Segment(
                    label=run[0].label,
                    index=run[0].index,
                    start_s=start,
                    end_s=end,
                    score=float(np.mean([entry.score for entry in run])),
                    windows=len(run),
                )
            )
            run.clear()

    for clip in clips:
        best = clip.top_k[0]
        if best.score < min_score:
            close()
            continue
        if run and best.index != run[0].index:
            close()
        if not run:
            start = clip.start_s
        run.append(best)
        end = clip.end_s
    close()
    return segments


def mean_embedding(embedding: np.ndarray) -> np.ndarray:
    """The (D,) float32 mean of per-view embeddings (V, D)."""
    return embedding.mean(axis=0, dtype=np.float64).astype(np.float32)


def window_embeddings(
    embedding: np.ndarray,
    clip_of_view: Sequence[int],
    clip_times: Sequence[tuple[float, float]],
) -> list[WindowEmbedding]:
    """Each window's embedding (its crops averaged) with its start and end in seconds."""
    views = np.asarray(clip_of_view)
    return [
        WindowEmbedding(
            window=clip,
            start_s=start,
            end_s=end,
            values=mean_embedding(embedding[views == clip]).tolist(),
        )
        for clip, (start, end) in enumerate(clip_times)
        if (views == clip).any()
    ]


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two vectors; 0 when either is all zeros (no direction to compare)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.clip(a @ b / norms, -1.0, 1.0)) if norms > 0 else 0.0


def similarity_threshold(manifest: Manifest, requested: float | None) -> tuple[float, str]:
    """The threshold a similarity request uses, and where it comes from."""
    if requested is not None:
        return requested, "request"
    if manifest.similarity is not None:
        return manifest.similarity.threshold, "calibrated"
    return DEFAULT_SIMILARITY_THRESHOLD, "default"


def timings(stages: RequestStages, classified: Classified | None = None) -> Timings:
    """The stages in ms (with a two-stream `classified`, each stream's share too)."""
    return Timings(
        upload_ms=stages.upload_s * 1e3,
        decode_wait_ms=stages.decode_wait_s * 1e3,
        decode_ms=stages.decode_s * 1e3,
        queue_ms=stages.queue_s * 1e3,
        inference_ms=stages.inference_s * 1e3,
        total_ms=stages.total_s * 1e3,
        streams=stream_timings(classified) if classified is not None else None,
    )


def classify_response(
    classified: Classified,
    stages: RequestStages,
    *,
    request_id: str,
    top_k: int,
    embedding: bool,
    per_clip: bool,
    segment_score: float | None = None,
) -> ClassifyResponse:
    """The answer; `segment_score` (None: no segments) merges the windows into segments."""
    manifest, outputs, decoded = classified.loaded.manifest, classified.outputs, classified.decoded
    spec = manifest.spec
    clips = segments = None
    if per_clip or segment_score is not None:
        times = [(c.start_s, c.end_s) for c in decoded.plan.clips]
        clips = per_clip_predictions(outputs.logits, decoded.view_clip, times, spec, top_k)
        if segment_score is not None:
            segments = merge_segments(clips, segment_score)
        clips = clips if per_clip else None
    mean = outputs.embedding.mean(0).astype(float).tolist() if embedding else None
    return ClassifyResponse(
        request_id=request_id,
        model=manifest.name,
        version=manifest.version,
        profile=classified.profile,
        top_k=top_labels(average_probabilities(outputs.logits), spec, top_k),
        embedding=Embedding(dim=spec.embedding_dim, values=mean) if mean is not None else None,
        clips=clips,
        segments=segments,
        video=video_metadata(decoded),
        timings=timings(stages, classified),
    )


def embed_response(
    classified: Classified, stages: RequestStages, *, request_id: str, per_window: bool
) -> EmbedResponse:
    manifest, outputs, decoded = classified.loaded.manifest, classified.outputs, classified.decoded
    windows = None
    if per_window:
        times = [(c.start_s, c.end_s) for c in decoded.plan.clips]
        windows = window_embeddings(outputs.embedding, decoded.view_clip, times)
    return EmbedResponse(
        request_id=request_id,
        model=manifest.name,
        version=manifest.version,
        profile=classified.profile,
        dim=outputs.embedding.shape[1],
        embedding=mean_embedding(outputs.embedding).tolist(),
        windows=windows,
        video=video_metadata(decoded),
        timings=timings(stages, classified),
    )


def similarity_response(
    a: Classified,
    b: Classified,
    stages: RequestStages,
    *,
    request_id: str,
    threshold: float | None,
) -> SimilarityResponse:
    manifest = a.loaded.manifest
    similarity = cosine_similarity(
        mean_embedding(a.outputs.embedding), mean_embedding(b.outputs.embedding)
    )
    used, source = similarity_threshold(manifest, threshold)
    return SimilarityResponse(
        request_id=request_id,
        model=manifest.name,
        version=manifest.version,
        profile=a.profile,
        similarity=similarity,
        threshold=used,
        threshold_source=source,
        same_action=similarity >= used,
        a=video_metadata(a.decoded),
        b=video_metadata(b.decoded),
        timings=timings(stages),
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
        views=decoded.num_views,
        keyframe_snap_s=decoded.plan.snap_s,
        warnings=list(decoded.warnings),
    )
