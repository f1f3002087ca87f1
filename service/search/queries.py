"""Searches over the window index, and the one write every producer calls.

    index_windows(index, manifest, windows, profile="fast")      # actserve batch, POST /index, jobs
    like_vector(index, manifest, query, top_k=10)                # a query clip's embedding
    like_window(index, manifest, "cam1/0001", at_s=12.0, top_k=10)   # a stored window
    of_classes(index, store, probe_manifest, top_k=10)           # a probe's new classes

Each returns ranked moments (`window_index.Moment`): adjacent windows of one video merged.
Nothing here decodes a video or runs a network; the routes and commands do that first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model_store import Manifest, ModelStore
from service.search.spaces import probe_head, space_of
from window_index import (
    Filters,
    InvalidQuery,
    Moment,
    NotIndexed,
    Space,
    WindowIndex,
    Windows,
    WrongSpace,
    merge_moments,
    score_classes,
)

#: At most this many windows are fetched per moment asked for (adjacent hits merge, so a
#: moment may take several): a search fetches top_k windows, then twice as many while they
#: make fewer than top_k moments.
MAX_WINDOWS_PER_MOMENT = 64
#: A class search keeps windows whose class probability reaches this (unless the request
#: says otherwise).
DEFAULT_CLASS_THRESHOLD = 0.5
NO_FILTERS = Filters()


def index_windows(
    index: WindowIndex,
    manifest: Manifest,
    windows: Windows,
    *,
    video_id: str,
    profile: str,
) -> tuple[Space, int]:
    """Store a video's windows (computed by `manifest`'s network) in the table of its
    embedding space, replacing that video's earlier windows there; returns the space and the
    window count. The function jobs call (behind `ACTSERVE_INDEX_JOBS`)."""
    space = space_of(manifest)
    return space, index.add_video(space, video_id, windows, profile=profile)


def like_vector(
    index: WindowIndex,
    manifest: Manifest,
    vector: np.ndarray,
    *,
    top_k: int,
    filters: Filters = NO_FILTERS,
    exclude: tuple[str, float] | None = None,
) -> list[Moment]:
    """The `top_k` moments most like `vector` (an embedding by `manifest`'s network), by the
    cosine similarity of their best window, made of the fewest best windows that give
    `top_k` moments. `exclude`: (video id, start) of a window whose moment is left out (the
    query's own, with the like windows next to it)."""
    space = space_of(manifest)
    wanted = top_k + 1
    while True:  # the fewest best windows that make `top_k` moments
        hits = index.search(space, vector, k=wanted, filters=filters)
        moments = merge_moments(hits, top_k=top_k + 1)
        if exclude is not None:
            moments = [m for m in moments if not _holds(m, *exclude)]
        limit = MAX_WINDOWS_PER_MOMENT * top_k
        if len(moments) >= top_k or len(hits) < wanted or wanted >= limit:
            return moments[:top_k]
        wanted *= 2


def _holds(moment: Moment, video_id: str, start_s: float) -> bool:
    return moment.video_id == video_id and moment.start_s <= start_s < moment.end_s


def like_window(
    index: WindowIndex,
    manifest: Manifest,
    video_id: str,
    at_s: float,
    *,
    top_k: int,
    filters: Filters = NO_FILTERS,
) -> tuple[list[Moment], tuple[float, float]]:
    """Moments like the stored window of `video_id` at `at_s` seconds (its own moment left
    out); also that window's (start, end)."""
    vector, window = index.window(space_of(manifest), video_id, at_s)
    moments = like_vector(
        index,
        manifest,
        vector,
        top_k=top_k,
        filters=filters,
        exclude=(window.video_id, window.start_s),
    )
    return moments, (window.start_s, window.end_s)


def of_classes(
    index: WindowIndex,
    store: ModelStore,
    manifest: Manifest,
    *,
    top_k: int,
    labels: Sequence[str] | None = None,
    threshold: float | None = None,
    filters: Filters = NO_FILTERS,
) -> tuple[list[Moment], tuple[str, ...], float, int]:
    """Every stored window of a probe version's base model through the probe's head: the
    moments whose top class is one of `labels` (default: the classes the probe added) at
    `threshold` of probability or above (default 0.5), less the windows an open-set probe
    calls `unknown`, ranked. Returns the moments, the labels and threshold used, and the
    windows scored."""
    if manifest.probe is None:
        raise WrongSpace(
            f"{manifest.name}@{manifest.version} is not a probe-trained version; name one "
            "that `actserve probe` made, or search with a query clip or a stored window"
        )
    space = space_of(manifest)
    held = index.spaces()
    if space not in held:
        if not held:
            raise NotIndexed("the index is empty: index videos first (POST /index, actserve batch)")
        raise WrongSpace(
            f"{manifest.name}@{manifest.version} scores embeddings of {space}, and the index "
            f"holds windows of {', '.join(str(s) for s in held)} only: index the videos with "
            f"{space} (or any probe version built on it) first"
        )
    classes = manifest.spec.labels or tuple(map(str, range(manifest.spec.num_classes)))
    wanted = tuple(labels) if labels else new_classes(store, manifest)
    unknown = [label for label in wanted if label not in classes]
    if unknown:
        raise InvalidQuery(
            f"{manifest.name}@{manifest.version} has no class {', '.join(map(repr, unknown))} "
            f"(its classes: {', '.join(classes)})"
        )
    threshold = DEFAULT_CLASS_THRESHOLD if threshold is None else threshold
    weight, bias = probe_head(store, manifest)
    windows = index.scan(space, filters)
    if len(windows) and windows.vectors.shape[1] != weight.shape[1]:
        raise WrongSpace(
            f"the index of {space} holds {windows.vectors.shape[1]}-wide embeddings; the "
            f"head of {manifest.name}@{manifest.version} takes {weight.shape[1]}"
        )
    hits = score_classes(
        windows,
        weight,
        bias,
        classes,
        wanted=(classes.index(label) for label in wanted),
        threshold=threshold,
        gate=known(manifest, windows),
    )
    return merge_moments(hits, top_k=top_k, max_drop=1.0), wanted, threshold, len(windows)


def known(manifest: Manifest, windows: Windows) -> np.ndarray | None:
    """For an open-set probe (`actserve probe --open-set`): which windows are close enough
    to one of its class prototypes to be anything but `unknown`."""
    probe = manifest.probe
    if probe is None or probe.prototypes is None or probe.reject_threshold is None:
        return None
    prototypes = np.asarray(probe.prototypes, dtype=np.float32)
    norms = np.linalg.norm(windows.vectors, axis=1)
    similarity = (windows.vectors @ prototypes.T).max(axis=1) / np.maximum(norms, 1e-12)
    return similarity >= probe.reject_threshold


def new_classes(store: ModelStore, manifest: Manifest) -> tuple[str, ...]:
    """The classes a probe version added: all of its classes, less its base's when it
    extended them (`actserve probe --extend`)."""
    assert manifest.probe is not None
    try:
        base = store.read_manifest(manifest.probe.base_model, manifest.probe.base_version)
    except Exception:  # the base lives in another store: every class counts as new
        return manifest.spec.labels
    old = set(base.spec.labels)
    return tuple(label for label in manifest.spec.labels if label not in old)
