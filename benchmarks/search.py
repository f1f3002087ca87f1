"""The window index measured: vector libraries side by side on synthetic windows, probe
re-scoring, index size per hour of video, and search on real indexed demo videos.

    python benchmarks/search.py                         # 1 M windows of 128 floats, everything
    python benchmarks/search.py --windows 200000 --libraries lancedb,faiss --videos 0

1. Synthetic windows shaped like an archive's: videos of 45 back-to-back windows (a minute of
   the demo model's 1.33 s windows), each three stretches of one of 1,000 motions; a window is
   its motion's direction, the video's own look, a direction all windows share and noise,
   scaled like the demo model's embeddings (cosine ~0.9 within a motion, ~0.25 across): the
   true top-10 are ten of a thousand near-equal windows of the query's motion, which is what
   makes an approximate index miss. Each library indexes the same vectors; queries
   are fresh windows of the same kind, timed one at a time and interleaved (query i on every
   library before query i+1), so the box's load falls on all alike. Recall@10 is against the
   exact cosine top-10 (numpy over every vector).
2. Probe re-scoring: `score_classes` (what POST /search does for a probe version) over every
   window of the index, the table read once from disk and then from the in-memory snapshot.
3. Index size per hour of video: the index's bytes on disk per window × windows per hour.
4. Real demo videos (`--videos`): each a sequence of three demo motions, indexed through the
   service's pipeline (`LocalPipeline`, the bundled model, as `actserve batch --index`); a
   fresh clip of each motion queries the index, and its top-10 moments are checked against the
   motion each video shows at that time.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

WINDOWS_PER_VIDEO = 45
MOTIONS = 1000


def synthetic(
    count: int, dim: int, seed: int, spread: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """`count` unit vectors of archive-like windows, and each one's video number."""
    rng = np.random.default_rng(1234)  # the motions are the same for index and queries
    motions = rng.standard_normal((MOTIONS, dim)).astype(np.float32)
    common = rng.standard_normal(dim).astype(np.float32)  # what every window shares
    rng = np.random.default_rng(seed)
    videos = math.ceil(count / WINDOWS_PER_VIDEO)
    out = np.empty((count, dim), dtype=np.float32)
    video_of = np.repeat(np.arange(videos), WINDOWS_PER_VIDEO)[:count]
    for start in range(0, count, 100_000):
        stop = min(start + 100_000, count)
        v = video_of[start:stop]
        # Each video: 3 stretches of 15 windows, each of its own motion.
        motion = rng.integers(0, MOTIONS, (videos, 3))[v, (np.arange(start, stop) % 45) // 15]
        look = np.random.default_rng(v * 7 + seed).standard_normal((stop - start, dim))
        x = motions[motion] + 0.25 * spread * look.astype(np.float32) + 0.6 * common
        x += 0.3 * spread * rng.standard_normal((stop - start, dim)).astype(np.float32)
        out[start:stop] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out, video_of


def exact_top(x: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = np.concatenate([queries @ x[s : s + 200_000].T for s in range(0, len(x), 200_000)], 1)
    return np.argsort(-scores, axis=1)[:, :k]


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def lance_rows(x: np.ndarray, start: int):  # -> pyarrow.Table
    """Rows of the window index's schema, one window per id (a 1 M-window archive is 22 k
    videos; written in a few large appends, not a commit per video)."""
    import pyarrow as pa

    ids = np.arange(start, start + len(x))
    return pa.table(
        {
            "video_id": pa.array(ids.astype(str).tolist(), pa.string()),
            "uri": pa.array([None] * len(x), pa.string()),
            "start_s": pa.array(ids.astype(np.float64), pa.float64()),
            "end_s": pa.array(ids + 1.0, pa.float64()),
            "profile": pa.array(["fast"] * len(x), pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1]),
        }
    )


class WindowIndexLib:
    name = "window_index: LanceDB rows + FAISS IVF-Flat (shipped)"

    def build(self, x: np.ndarray, root: Path) -> None:
        import faiss

        from window_index import Space, WindowIndex

        faiss.omp_set_num_threads(1)  # one query at a time: threads only contend
        self.path = root / "window-index"
        self.index = WindowIndex(self.path)
        self.space = Space("bench", 1)
        db = self.index._db
        for start in range(0, len(x), 250_000):
            rows = lance_rows(x[start : start + 250_000], start)
            if start:
                db.open_table(self.space.table).add(rows)
            else:
                db.create_table(self.space.table, rows)
        self.index.optimize(self.space)  # compaction, the snapshot and its IVF index

    def query(self, q: np.ndarray, k: int) -> np.ndarray:
        return np.array([int(h.video_id) for h in self.index.search(self.space, q, k=k)])


class LanceIvf:
    name = "LanceDB's own IVF_FLAT (nprobes 48, refine 4)"

    def build(self, x: np.ndarray, root: Path) -> None:
        import lancedb

        self.path = root / "lance-ivf"
        db = lancedb.connect(str(self.path))
        for start in range(0, len(x), 250_000):
            rows = lance_rows(x[start : start + 250_000], start)
            if start:
                self.table.add(rows)
            else:
                self.table = db.create_table("w", rows)
        self.table.create_index(
            metric="cosine",
            index_type="IVF_FLAT",
            num_partitions=max(1, int(math.sqrt(len(x)))),
        )

    def query(self, q: np.ndarray, k: int) -> np.ndarray:
        rows = (
            self.table.search(q)
            .distance_type("cosine")
            .nprobes(48)
            .refine_factor(4)
            .limit(k)
            .select(["video_id", "_distance"])
            .to_arrow()
        )
        return np.array([int(v) for v in rows.column("video_id").to_pylist()])


class Hnswlib:
    name = "hnswlib M 16, ef 64"

    def build(self, x: np.ndarray, root: Path) -> None:
        import hnswlib

        self.index = hnswlib.Index("ip", x.shape[1])
        self.index.init_index(len(x), M=16, ef_construction=100)
        self.index.set_num_threads(2)
        self.index.add_items(x)
        self.index.set_ef(64)
        self.index.set_num_threads(1)
        self.path = root / "hnsw.index"
        self.index.save_index(str(self.path))

    def query(self, q: np.ndarray, k: int) -> np.ndarray:
        return self.index.knn_query(q[None], k)[0][0]


LIBRARIES = {"window_index": WindowIndexLib, "lancedb": LanceIvf, "hnswlib": Hnswlib}


def compare(args: argparse.Namespace, root: Path) -> WindowIndexLib | None:
    x, _ = synthetic(args.windows, args.dim, seed=1, spread=args.spread)
    queries, _ = synthetic(args.queries, args.dim, seed=2, spread=args.spread)
    truth = exact_top(x, queries, 10)
    built, rows = {}, []
    for name in args.libraries:
        library = LIBRARIES[name]()
        started = time.perf_counter()
        library.build(x, root)
        built[name] = (library, time.perf_counter() - started)
        print(f"built {library.name} in {built[name][1]:.1f} s ({load()})", flush=True)
    latencies = {name: [] for name in built}
    found = {name: [] for name in built}
    for q in queries:  # interleaved: query i on every library, then query i + 1
        for name, (library, _) in built.items():
            started = time.perf_counter()
            ids = library.query(q, 10)
            latencies[name].append(time.perf_counter() - started)
            found[name].append(ids)
    for name, (library, seconds) in built.items():
        recall = np.mean(
            [len(set(f) & set(t)) / 10 for f, t in zip(found[name], truth, strict=True)]
        )
        ms = np.array(latencies[name]) * 1e3
        rows.append(
            (
                library.name,
                recall,
                np.percentile(ms, 50),
                np.percentile(ms, 99),
                seconds,
                disk_bytes(library.path) if library.path.is_dir() else library.path.stat().st_size,
            )
        )
    print(
        f"\n{args.windows:,} windows × {args.dim} floats (spread {args.spread}), {args.queries} "
        f"queries, top-10 ({load()})"
    )
    print("| library | recall@10 | query p50 ms | query p99 ms | build s | size MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, recall, p50, p99, seconds, size in rows:
        mib = size / 2**20
        print(f"| {name} | {recall:.3f} | {p50:.2f} | {p99:.2f} | {seconds:.0f} | {mib:.0f} |")
    shipped = built.get("window_index", (None,))[0]
    if shipped is not None:
        nprobe_sweep(shipped, queries, truth)
    return shipped


def nprobe_sweep(shipped: WindowIndexLib, queries: np.ndarray, truth: np.ndarray) -> None:
    """Recall and latency of the shipped index at other nprobe settings."""
    import window_index.store as store

    default = store.NPROBE
    print("\n| nprobe | recall@10 | query p50 ms | query p99 ms |\n|---:|---:|---:|---:|")
    for nprobe in (16, 32, default, 96, 192):
        store.NPROBE = nprobe
        found, ms = [], []
        for q in queries:
            started = time.perf_counter()
            found.append(shipped.query(q, 10))
            ms.append((time.perf_counter() - started) * 1e3)
        recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
        mark = " (default)" if nprobe == default else ""
        print(
            f"| {nprobe}{mark} | {recall:.3f} | {np.percentile(ms, 50):.2f} | "
            f"{np.percentile(ms, 99):.2f} |"
        )
    store.NPROBE = default


def rescoring(lance: WindowIndexLib, args: argparse.Namespace) -> None:
    from window_index import score_classes

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((12, args.dim)).astype(np.float32)
    bias = np.zeros(12, dtype=np.float32)
    labels = tuple(f"class {i}" for i in range(12))
    index, space = lance.index, lance.space
    index._snapshots.clear()  # read the table (and load its saved IVF) from disk once
    started = time.perf_counter()
    windows = index.scan(space)
    read = time.perf_counter() - started
    times = []
    for _ in range(5):
        started = time.perf_counter()
        windows = index.scan(space)
        hits = score_classes(windows, weight, bias, labels, wanted=[10, 11], threshold=0.5)
        times.append(time.perf_counter() - started)
    size = disk_bytes(lance.path)
    per_window = size / len(windows)
    per_hour = per_window * 3600 / (4 / 3)  # the demo model's 1.33 s windows
    print(
        f"\nprobe re-scoring of {len(windows):,} windows (12-class head): the table read from "
        f"disk once in {read:.2f} s, then {np.median(times):.2f} s a search (median of 5; "
        f"{len(hits):,} hits; {load()})"
    )
    print(
        f"index size on disk: {per_window:.0f} bytes a window (LanceDB rows + the saved IVF), "
        f"{per_hour / 2**20:.2f} MiB per hour of video at 1.33 s windows"
    )


def demo_videos(args: argparse.Namespace, root: Path) -> None:
    import asyncio

    from actserve.demo.synthetic import ACTIONS, render_sequence, render_video, write_video
    from actserve.local import LocalPipeline
    from model_store import ModelStore
    from service.engine import RunOptions
    from service.search import index_windows, queries
    from service.search.embeddings import clip_embedding, video_windows
    from service.settings import BUNDLED_STORE
    from window_index import WindowIndex

    rng = np.random.default_rng(7)
    folder = root / "videos"
    folder.mkdir()
    truth = {}
    for i in range(args.videos):
        motions = [str(m) for m in rng.choice(ACTIONS, 3, replace=False)]
        path = folder / f"{i:03d}.mp4"
        write_video(render_sequence(motions, seconds_each=4.0, seed=9_000 + i), str(path))
        truth[str(path)] = motions
    index = WindowIndex(root / "demo-index")
    manifest = ModelStore(BUNDLED_STORE).resolve("demo-actions")

    async def run() -> tuple[float, float]:
        async with LocalPipeline(BUNDLED_STORE, "demo-actions", workers=2) as local:
            started = time.perf_counter()
            options = RunOptions(profile="fast", per_clip=True)
            for path in truth:
                classified = await local.classify(path, options)
                index_windows(
                    index, manifest, video_windows(classified, path), video_id=path, profile="fast"
                )
            indexing = time.perf_counter() - started
            right = total = 0
            for a, action in enumerate(ACTIONS):
                clip = folder / f"query-{a}.mp4"
                write_video(render_video(action, seed=77_000 + a, height=120, width=160), str(clip))
                vector = clip_embedding(await local.classify(clip, RunOptions()))
                moments = queries.like_vector(index, manifest, vector, top_k=10)
                for m in moments:
                    middle = (m.start_s + m.end_s) / 2
                    shown = truth[m.video_id][min(2, int(middle // 4.0))]
                    right += shown == action
                    total += 1
            return indexing, right / max(total, 1)

    indexing, precision = asyncio.run(run())
    windows = sum(index.spaces().values())
    print(
        f"\ndemo videos: {args.videos} videos of 3 motions × 4 s, {windows} windows indexed in "
        f"{indexing:.1f} s; a fresh clip of each of the {len(ACTIONS)} motions: "
        f"{precision:.1%} of its top-10 moments show that motion ({load()})"
    )


def load() -> str:
    return "load average " + ", ".join(f"{v:.1f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--libraries", type=lambda s: s.split(","), default=list(LIBRARIES))
    parser.add_argument(
        "--spread",
        type=float,
        default=1.0,
        help="scale of each window's own look and noise (1: like the demo model; 3: within-motion "
        "cosine ~0.5, a hard case for any approximate index)",
    )
    parser.add_argument("--videos", type=int, default=50, help="demo videos (0: skip)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="actserve-search-"))
    try:
        if args.videos:
            demo_videos(args, root)
        lance = compare(args, root)
        if lance is not None:
            rescoring(lance, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
