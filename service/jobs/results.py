"""A job's answer, from its stored chunks: the whole-video summary written when the job
succeeds, and the per-window results read back a page (or a stream) at a time.

The numbers are the sync endpoints': probabilities are each view's softmax averaged over the
views (mmaction2's `average_clips='prob'`), a window's scores its crops' average, segments
the same merge of windows whose top-1 agrees, embeddings the mean over views.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from typing import Any

import numpy as np

from model_store import ModelSpec
from service.jobs.db import from_bytes
from service.jobs.queue import Chunk, Job
from service.jobs.schemas import JobResults, ResultsPage
from service.jobs.serving import (
    SegmentRule,
    WindowPlan,
    segment_predictions,
    softmax,
    top_labels,
)
from service.responses import shot_of, shot_probabilities
from service.schemas import ClipPrediction, Embedding, Shot, VideoMetadata, WindowEmbedding
from service.video.shots import ShotBoundary, ShotRule, prune

FEATURES = ("labels", "segments", "shots", "windows", "embeddings")


def window_rows(chunk: Chunk) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Each window of a chunk: its number, probabilities (crops averaged) and embedding."""
    logits, embedding = from_bytes(chunk.logits), from_bytes(chunk.embedding)
    views = from_bytes(chunk.view_window)
    probabilities = softmax(logits)
    for window in range(chunk.start, chunk.stop):
        mine = views == window
        if mine.any():
            yield (
                window,
                probabilities[mine].mean(0),
                embedding[mine].mean(0, dtype=np.float64).astype(np.float32),
            )


def summarize(
    chunks: Iterable[Chunk],
    plan: WindowPlan,
    spec: ModelSpec,
    segment_score: float,
    shots: ShotRule | None = None,
):
    """The whole-video summary of a finished job (stored with it as JSON); with a shot rule,
    the shots (each with its probabilities) and shot-aware segments."""
    probability_sum: np.ndarray | None = None
    embedding_sum: np.ndarray | None = None
    views = frames = 0
    warnings: list[str] = []
    video: dict[str, Any] | None = None
    rows: list[np.ndarray] = []
    times: list[tuple[float, float]] = []
    boundaries: list[ShotBoundary] = []
    for chunk in chunks:
        logits, embedding = from_bytes(chunk.logits), from_bytes(chunk.embedding)
        chunk_probabilities = softmax(logits).sum(0)
        chunk_embedding = embedding.astype(np.float64).sum(0)
        probability_sum = chunk_probabilities + (0 if probability_sum is None else probability_sum)
        embedding_sum = chunk_embedding + (0 if embedding_sum is None else embedding_sum)
        views += len(logits)
        frames += chunk.frames_decoded
        warnings.extend(w for w in chunk.warnings if w not in warnings)
        video = video or chunk.video
        boundaries.extend(ShotBoundary(**b) for b in chunk.shots or ())
        for window, probabilities, _ in window_rows(chunk):
            rows.append(probabilities)
            times.append(plan.windows[window])
    if probability_sum is None or embedding_sum is None or video is None:
        raise ValueError("a job without chunks has no summary")
    video = {
        **video,
        "frames_decoded": frames,
        "clips": len(plan.windows),
        "views": views,
        "keyframe_snap_s": None,
        "warnings": warnings,
    }
    kept: list[ShotBoundary] = []
    found_shots = None
    if shots is not None:
        kept = prune(boundaries, shots)
        duration = video.get("duration_s") or times[-1][1]
        found_shots = [
            {
                "start_s": start,
                "end_s": end,
                "boundary": asdict(boundary) if boundary is not None else None,
                "probabilities": scores.tolist(),
            }
            for start, end, boundary, scores in shot_probabilities(
                np.asarray(rows), times, kept, duration
            )
        ]
    cuts = [boundary.time_s for boundary in kept]
    return {
        "probabilities": (probability_sum / views).tolist(),
        "embedding": (embedding_sum / views).astype(np.float32).astype(float).tolist(),
        "segments": [
            s.model_dump()
            for s in segment_predictions(
                np.asarray(rows), times, spec, SegmentRule(min_score=segment_score), cuts
            )
        ],
        "shots": found_shots,
        "video": video,
    }


def header(job: Job, spec: ModelSpec, top_k: int) -> dict[str, Any]:
    """The fields of a finished job's answer that are not per window."""
    summary = job.summary or {}
    features = set(job.request["features"])
    probabilities = np.asarray(summary["probabilities"])
    mean = summary["embedding"]
    return {
        "job_id": job.id,
        "model": job.model,
        "version": job.version,
        "profile": job.plan["profile"] if job.plan else job.request.get("profile"),
        "features": job.request["features"],
        "top_k": top_labels(probabilities, spec, top_k) if "labels" in features else None,
        "embedding": Embedding(dim=len(mean), values=mean) if "embeddings" in features else None,
        "segments": summary["segments"] if "segments" in features else None,
        "shots": _shots(summary, spec, top_k) if "shots" in features else None,
        "video": VideoMetadata(**summary["video"]),
    }


def _shots(summary: dict[str, Any], spec: ModelSpec, top_k: int) -> list[Shot]:
    """The stored shots as the sync answer gives them (top-k chosen when read)."""
    return [
        shot_of(
            number,
            shot["start_s"],
            shot["end_s"],
            ShotBoundary(**shot["boundary"]) if shot["boundary"] else None,
            top_labels(np.asarray(shot["probabilities"]), spec, top_k),
        )
        for number, shot in enumerate(summary.get("shots") or ())
    ]


def windows(
    job: Job, chunks: Iterable[Chunk], spec: ModelSpec, top_k: int, first: int, count: int
) -> tuple[list[ClipPrediction] | None, list[WindowEmbedding] | None]:
    """Windows `first` to `first + count` as the sync answers give them: scores (`clips`, the
    `windows` feature) and embeddings (`windows`, the `embeddings` feature)."""
    features = set(job.request["features"])
    plan = WindowPlan.from_json(job.plan or {})
    clips: list[ClipPrediction] = []
    embeddings: list[WindowEmbedding] = []
    for chunk in chunks:
        for window, probabilities, embedding in window_rows(chunk):
            if window < first:
                continue
            if window >= first + count:
                break
            start, end = plan.windows[window]
            clips.append(
                ClipPrediction(
                    clip=window,
                    start_s=start,
                    end_s=end,
                    top_k=top_labels(probabilities, spec, top_k),
                )
            )
            embeddings.append(
                WindowEmbedding(
                    window=window, start_s=start, end_s=end, values=embedding.astype(float).tolist()
                )
            )
        if chunk.stop >= first + count:
            break
    return (
        clips if "windows" in features else None,
        embeddings if "embeddings" in features else None,
    )


def page(
    job: Job, chunks: Iterable[Chunk], spec: ModelSpec, *, top_k: int, offset: int, limit: int
) -> JobResults:
    """One page of a finished job's answer: the summary and windows offset..offset+limit."""
    total = job.windows_total or 0
    clips, embeddings = windows(job, chunks, spec, top_k, offset, limit)
    following = offset + limit if offset + limit < total else None
    return JobResults(
        **header(job, spec, top_k),
        clips=clips,
        windows=embeddings,
        page=ResultsPage(offset=offset, limit=limit, windows=total, next_offset=following),
    )


def json_lines(job: Job, chunks: Iterable[Chunk], spec: ModelSpec, *, top_k: int) -> Iterator[str]:
    """The whole answer as JSON Lines: a `summary` line, then one `window` line per window,
    read from the database a chunk at a time."""
    head = {"kind": "summary", **header(job, spec, top_k)}
    yield json.dumps(_plain(head)) + "\n"
    features = set(job.request["features"])
    plan = WindowPlan.from_json(job.plan or {})
    for chunk in chunks:
        for window, probabilities, embedding in window_rows(chunk):
            start, end = plan.windows[window]
            line: dict[str, Any] = {"kind": "window", "window": window}
            line |= {"start_s": start, "end_s": end}
            if "windows" in features:
                line["top_k"] = [s.model_dump() for s in top_labels(probabilities, spec, top_k)]
            if "embeddings" in features:
                line["embedding"] = embedding.astype(float).tolist()
            yield json.dumps(line) + "\n"


def _plain(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
