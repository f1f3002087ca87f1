"""From a video's run (`engine.VideoRun`) to what a client reads: top-k labels, per-clip
scores and segments, the mean and per-window embeddings, the similarity of two videos, and the
whole /classify, /embed and /similarity answers. The arithmetic is `service.scores`'."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model_store import Manifest, ModelSpec
from service.engine import VideoRun
from service.metrics import RequestStages
from service.schemas import (
    ClassifyResponse,
    ClipPrediction,
    Embedding,
    EmbedResponse,
    LabelScore,
    Segment,
    SimilarityResponse,
    VideoMetadata,
    WindowEmbedding,
)
from service.scores import average_probabilities, cosine_similarity, mean_embedding, softmax
from service.video import DecodedVideo

#: `POST /similarity`'s threshold for a version without a calibrated one (`actserve probe`
#: calibrates it): the demo model's same-action pairs score 0.88-0.99, different ones 0.18-0.47.
DEFAULT_SIMILARITY_THRESHOLD = 0.8


def top_labels(probabilities: np.ndarray, spec: ModelSpec, k: int) -> list[LabelScore]:
    """The k most probable classes of a (K,) probability vector, best first."""
    k = min(k, len(probabilities))
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [
        LabelScore(label=spec.label_of(int(i)), index=int(i), score=float(probabilities[i]))
        for i in order
    ]


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


def similarity_threshold(manifest: Manifest, requested: float | None) -> tuple[float, str]:
    """The threshold a similarity request uses, and where it comes from."""
    if requested is not None:
        return requested, "request"
    if manifest.similarity is not None:
        return manifest.similarity.threshold, "calibrated"
    return DEFAULT_SIMILARITY_THRESHOLD, "default"


def classify_response(
    run: VideoRun,
    *,
    request_id: str,
    top_k: int,
    embedding: bool,
    per_clip: bool,
    segment_score: float | None = None,
) -> ClassifyResponse:
    """The answer; `segment_score` (None: no segments) merges the windows into segments."""
    manifest, outputs, decoded = run.loaded.manifest, run.outputs, run.decoded
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
        profile=run.profile,
        top_k=top_labels(average_probabilities(outputs.logits), spec, top_k),
        embedding=Embedding(dim=spec.embedding_dim, values=mean) if mean is not None else None,
        clips=clips,
        segments=segments,
        video=video_metadata(decoded),
        timings=run.stages.to_timings(),
    )


def embed_response(run: VideoRun, *, request_id: str, per_window: bool) -> EmbedResponse:
    manifest, outputs, decoded = run.loaded.manifest, run.outputs, run.decoded
    windows = None
    if per_window:
        times = [(c.start_s, c.end_s) for c in decoded.plan.clips]
        windows = window_embeddings(outputs.embedding, decoded.view_clip, times)
    return EmbedResponse(
        request_id=request_id,
        model=manifest.name,
        version=manifest.version,
        profile=run.profile,
        dim=outputs.embedding.shape[1],
        embedding=mean_embedding(outputs.embedding).tolist(),
        windows=windows,
        video=video_metadata(decoded),
        timings=run.stages.to_timings(),
    )


def similarity_response(
    a: VideoRun,
    b: VideoRun,
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
        timings=RequestStages.merge([a.stages, b.stages]).to_timings(),
    )


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
