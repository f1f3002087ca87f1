"""The window index on its own: exact and IVF search against numpy, filters, one table per
model version, replacing and deleting videos, and what it refuses."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from window_index import (
    Filters,
    Hit,
    InvalidQuery,
    NotIndexed,
    Space,
    WindowIndex,
    Windows,
    WrongSpace,
    merge_moments,
    score_classes,
)

SPACE = Space("demo-actions", 1)


def clustered(videos: int, windows: int, dim: int, seed: int) -> dict[str, np.ndarray]:
    """Each video: `windows` back-to-back windows near one of 20 directions."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((20, dim))
    return {
        f"video-{v}": centres[rng.integers(20)] + 0.4 * rng.standard_normal((windows, dim))
        for v in range(videos)
    }


def fill(index: WindowIndex, vectors: dict[str, np.ndarray], space: Space = SPACE) -> None:
    for video, rows in vectors.items():
        n = len(rows)
        windows = Windows.of_video(video, np.arange(n) * 1.5, np.arange(1, n + 1) * 1.5, rows)
        index.add_video(space, video, windows, profile="fast")


def exact(vectors: dict[str, np.ndarray], query: np.ndarray, k: int) -> list[tuple[str, float]]:
    rows = [(v, i * 1.5, r) for v, rs in vectors.items() for i, r in enumerate(rs)]
    sims = [r @ query / np.linalg.norm(r) / np.linalg.norm(query) for _, _, r in rows]
    order = np.argsort(sims)[::-1][:k]
    return [(rows[i][0], rows[i][1]) for i in order]


def test_exact_search_ranks_windows_as_numpy_does(tmp_path: Path) -> None:
    vectors = clustered(12, 8, 16, seed=0)
    index = WindowIndex(tmp_path)
    fill(index, vectors)
    query = np.random.default_rng(5).standard_normal(16)
    hits = index.search(SPACE, query, k=10)
    assert [(h.video_id, h.start_s) for h in hits] == exact(vectors, query, 10)
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
    assert index.spaces() == {SPACE: 96}
    assert index.videos(SPACE)["video-3"] == 8


def test_the_ivf_index_finds_the_exact_neighbours_and_honours_filters(tmp_path: Path) -> None:
    vectors = clustered(60, 20, 24, seed=1)  # 1,200 windows: over ann_min_rows
    index = WindowIndex(tmp_path, ann_min_rows=500)
    fill(index, vectors)
    index.optimize(SPACE)
    assert index._snapshot(SPACE).ann is not None
    rng = np.random.default_rng(2)
    recall = []
    for _ in range(20):
        query = vectors[f"video-{rng.integers(60)}"][rng.integers(20)] + 0.1 * rng.standard_normal(
            24
        )
        found = {(h.video_id, h.start_s) for h in index.search(SPACE, query, k=10)}
        recall.append(len(found & set(exact(vectors, query, 10))) / 10)
    assert np.mean(recall) >= 0.95
    # A filter leaving fewer than ann_min_rows windows is searched exactly; a wide one by IVF.
    few = Filters(videos=("video-7", "video-8"), from_s=3.0, to_s=12.0)
    hits = index.search(SPACE, query, k=50, filters=few)
    assert hits and {h.video_id for h in hits} <= {"video-7", "video-8"}
    assert all(h.end_s > 3.0 and h.start_s < 12.0 for h in hits)
    wide = Filters(from_s=6.0)
    assert all(h.end_s > 6.0 for h in index.search(SPACE, query, k=30, filters=wide))


def test_a_video_indexed_again_is_replaced_and_deletes_reach_every_version(tmp_path) -> None:
    index = WindowIndex(tmp_path)
    fill(index, clustered(3, 4, 8, seed=3))
    fill(index, clustered(2, 5, 8, seed=4), Space("demo-actions", 2))
    fill(index, {"video-0": np.ones((2, 8))})
    assert index.videos(SPACE)["video-0"] == 2
    hits = index.search(SPACE, np.ones(8), k=2)
    assert [(h.video_id, round(h.score, 6)) for h in hits] == [("video-0", 1.0)] * 2
    removed = index.delete_video("video-0")
    assert removed == {SPACE: 2, Space("demo-actions", 2): 5}
    assert "video-0" not in index.videos(SPACE)
    assert index.drop(Space("demo-actions", 2)) == 5
    assert list(index.spaces()) == [SPACE]


def test_writes_of_another_process_are_seen(tmp_path: Path) -> None:
    reader = WindowIndex(tmp_path)
    fill(reader, clustered(2, 3, 8, seed=5))
    assert len(reader.search(SPACE, np.ones(8), k=10)) == 6
    writer = WindowIndex(tmp_path)  # as `actserve batch --index` beside a running service
    fill(writer, {"late": np.ones((4, 8))})
    reader._snapshots[SPACE].checked = float("-inf")  # RECHECK_S later
    assert "late" in {h.video_id for h in reader.search(SPACE, np.ones(8), k=4)}


def test_the_stored_window_at_a_time_and_what_is_refused(tmp_path: Path) -> None:
    index = WindowIndex(tmp_path)
    with pytest.raises(NotIndexed, match="holds nothing"):
        index.search(SPACE, np.ones(8), k=1)
    fill(index, clustered(2, 4, 8, seed=6))
    vector, hit = index.window(SPACE, "video-1", 2.0)
    assert (hit.start_s, hit.end_s) == (1.5, 3.0) and vector.shape == (8,)
    with pytest.raises(NotIndexed, match="no window at 99"):
        index.window(SPACE, "video-1", -0.0 + 99)
    with pytest.raises(NotIndexed, match="no windows of video 'nope'"):
        index.window(SPACE, "nope", 0.0)
    with pytest.raises(NotIndexed, match=r"no windows of demo-actions@7 .*holds demo-actions@1"):
        index.search(Space("demo-actions", 7), np.ones(8), k=1)
    with pytest.raises(WrongSpace, match="8-wide"):
        index.search(SPACE, np.ones(16), k=1)
    with pytest.raises(WrongSpace, match="8-wide"):
        fill(index, {"wide": np.ones((2, 16))})
    with pytest.raises(InvalidQuery, match="all zeros"):
        index.search(SPACE, np.zeros(8), k=1)
    with pytest.raises(InvalidQuery, match="not finite"):
        index.search(SPACE, np.full(8, np.nan), k=1)
    with pytest.raises(InvalidQuery, match="printable"):
        index.delete_video("bad\nid")
    with pytest.raises(InvalidQuery, match="after from_s"):
        index.search(SPACE, np.ones(8), k=1, filters=Filters(from_s=5, to_s=2))
    # Quotes in ids are data, not SQL.
    fill(index, {"it's": np.ones((1, 8))})
    assert index.delete_video("it's") == {SPACE: 1}


def test_adjacent_windows_merge_into_ranked_moments() -> None:
    hits = [
        Hit("a", 0.0, 1.5, 0.85),
        Hit("a", 1.5, 3.0, 0.9),
        Hit("a", 3.0, 4.5, 0.5),  # adjacent but far weaker: a moment of its own
        Hit("a", 6.0, 7.5, 0.8),
        Hit("b", 3.0, 4.5, 0.95),
        Hit("a", 3.0, 4.5, 0.6, label="x"),  # another class: its own moment
    ]
    moments = merge_moments(hits, top_k=10)
    assert [(m.video_id, m.start_s, m.end_s, m.score, m.windows) for m in moments] == [
        ("b", 3.0, 4.5, 0.95, 1),
        ("a", 0.0, 3.0, 0.9, 2),
        ("a", 6.0, 7.5, 0.8, 1),
        ("a", 3.0, 4.5, 0.6, 1),
        ("a", 3.0, 4.5, 0.5, 1),
    ]
    assert len(merge_moments(hits, top_k=2)) == 2


def test_a_linear_head_scores_every_window_and_keeps_its_classes_above_threshold() -> None:
    vectors = np.array([[5.0, 0.0], [0.0, 5.0], [0.1, 0.0], [4.0, 0.0]], dtype=np.float32)
    windows = Windows(
        np.array(["a", "a", "b", "b"], dtype=object),
        np.array([0.0, 1.0, 0.0, 1.0]),
        np.array([1.0, 2.0, 1.0, 2.0]),
        vectors,
    )
    weight, bias = np.eye(2, dtype=np.float32), np.zeros(2, dtype=np.float32)
    hits = score_classes(windows, weight, bias, ("new", "old"), wanted=[0], threshold=0.9)
    assert [(h.video_id, h.start_s, h.label) for h in hits] == [
        ("a", 0.0, "new"),
        ("b", 1.0, "new"),
    ]
    gate = np.array([False, True, True, True])
    gated = score_classes(
        windows, weight, bias, ("new", "old"), wanted=[0], threshold=0.9, gate=gate
    )
    assert [(h.video_id, h.start_s) for h in gated] == [("b", 1.0)]
