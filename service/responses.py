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
    Shot,
    SimilarityResponse,
    VideoMetadata,
    WindowEmbedding,
)
from service.scores import (
    average_probabilities,
    cosine_similarity,
    mean_embedding,
    window_probabilities,
)
from service.segments import SegmentRule, find_segments
from service.video import DecodedVideo
from service.video.shots import ShotBoundary, confidence, shot_spans

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
    probabilities: np.ndarray,
    clips: Sequence[int],
    clip_times: Sequence[tuple[float, float]],
    spec: ModelSpec,
    k: int,
) -> list[ClipPrediction]:
    """Scores of each clip with the clip's start and end in seconds."""
    return [
        ClipPrediction(
            clip=clip,
            start_s=clip_times[clip][0],
            end_s=clip_times[clip][1],
            top_k=top_labels(row, spec, k),
        )
        for clip, row in zip(clips, probabilities, strict=True)
    ]


def segment_predictions(
    probabilities: np.ndarray,
    times: Sequence[tuple[float, float]],
    spec: ModelSpec,
    rule: SegmentRule,
    cuts: Sequence[float],
) -> list[Segment]:
    """The windows merged into segments (`service.segments`), labelled."""
    return [
        Segment(
            label=spec.label_of(span.index),
            index=span.index,
            start_s=span.start_s,
            end_s=span.end_s,
            score=span.score,
            windows=span.windows,
        )
        for span in find_segments(probabilities, times, rule, cuts)
    ]


def shot_predictions(
    probabilities: np.ndarray,
    times: Sequence[tuple[float, float]],
    boundaries: Sequence[ShotBoundary],
    duration_s: float,
    spec: ModelSpec,
    k: int,
) -> list[Shot]:
    """Each shot with the top-k of the window probabilities over it."""
    return [
        shot_of(number, start, end, boundary, top_labels(scores, spec, k))
        for number, (start, end, boundary, scores) in enumerate(
            shot_probabilities(probabilities, times, boundaries, duration_s)
        )
    ]


def shot_probabilities(
    probabilities: np.ndarray,
    times: Sequence[tuple[float, float]],
    boundaries: Sequence[ShotBoundary],
    duration_s: float,
) -> list[tuple[float, float, ShotBoundary | None, np.ndarray]]:
    """Each shot (start, end, the boundary that opened it) with the window probabilities over
    it, each window weighted by how much of it lies in the shot; a shot past the last window
    takes the nearest window's."""
    bounds = np.asarray(times, np.float64).reshape(-1, 2)
    middles = bounds.mean(1)
    shots = []
    for start, end, boundary in shot_spans(list(boundaries), duration_s):
        overlap = np.clip(np.minimum(bounds[:, 1], end) - np.maximum(bounds[:, 0], start), 0, None)
        if not overlap.any():
            overlap[np.argmin(np.abs(middles - (start + end) / 2))] = 1.0
        shots.append((start, end, boundary, overlap @ probabilities / overlap.sum()))
    return shots


def shot_of(
    number: int, start: float, end: float, boundary: ShotBoundary | None, top_k: list[LabelScore]
) -> Shot:
    return Shot(
        shot=number,
        start_s=start,
        end_s=end,
        confidence=confidence(boundary) if boundary else None,
        kind=boundary.kind if boundary else None,
        top_k=top_k,
    )


def video_embedding(embedding: np.ndarray) -> Embedding:
    """The video's embedding, /classify's and /embed's alike: the mean of its views' (V, D)."""
    return Embedding(dim=embedding.shape[1], values=mean_embedding(embedding).tolist())


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
    segments: SegmentRule | None = None,
    windows: VideoRun | None = None,
) -> ClassifyResponse:
    """The answer; `segments` (None: none) merges the windows into segments; a scan for shots
    (`run.shots`) adds the shots and makes the segments shot-aware. `windows`: the run of
    back-to-back windows the clips, segments and shots come from, when they are not `run`'s
    own views (the top-k and embedding always are `run`'s)."""
    manifest, outputs, decoded = run.loaded.manifest, run.outputs, run.decoded
    windowed = windows or run
    spec = manifest.spec
    clips = found_segments = shots = None
    if per_clip or segments is not None or windowed.shots is not None:
        source = windowed.decoded
        times = [(c.start_s, c.end_s) for c in source.plan.clips]
        rows, present = window_probabilities(windowed.outputs.logits, source.view_clip, len(times))
        kept = [times[clip] for clip in present]
        boundaries = windowed.shots or ()
        if per_clip:
            clips = per_clip_predictions(rows, present, times, spec, top_k)
        if segments is not None:
            cuts = [boundary.time_s for boundary in boundaries]
            found_segments = segment_predictions(rows, kept, spec, segments, cuts)
        if windowed.shots is not None and kept:
            duration = source.info.duration_s or kept[-1][1]
            shots = shot_predictions(rows, kept, boundaries, duration, spec, top_k)
    return ClassifyResponse(
        request_id=request_id,
        model=manifest.name,
        version=manifest.version,
        profile=run.profile,
        top_k=top_labels(average_probabilities(outputs.logits), spec, top_k),
        embedding=video_embedding(outputs.embedding) if embedding else None,
        clips=clips,
        segments=found_segments,
        shots=shots,
        video=video_metadata(decoded),
        timings=run.stages.to_timings(),
    )


def embed_response(
    run: VideoRun, *, request_id: str, per_window: bool, windowed: VideoRun | None = None
) -> EmbedResponse:
    """The answer: the mean embedding of `run`'s views (the profile's), and with
    `per_window` each window's, from `windowed` (default: `run`)."""
    manifest, outputs, decoded = run.loaded.manifest, run.outputs, run.decoded
    windows = None
    if per_window:
        source = windowed or run
        times = [(c.start_s, c.end_s) for c in source.decoded.plan.clips]
        windows = window_embeddings(source.outputs.embedding, source.decoded.view_clip, times)
    return EmbedResponse(
        request_id=request_id,
        model=manifest.name,
        version=manifest.version,
        profile=run.profile,
        embedding=video_embedding(outputs.embedding),
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
