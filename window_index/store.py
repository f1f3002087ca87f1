"""The index of window embeddings: one LanceDB table per model version, on local disk.

    index = WindowIndex(Path("index"))
    space = Space("demo-actions", 1)                  # the version whose network made them
    index.add_video(space, "cam1/0001", windows)      # replaces that video's windows
    hits = index.search(space, query, k=40, filters=Filters(videos=("cam1/0001",)))
    everything = index.scan(space)                    # every window, for a probe's head
    index.delete_video("cam1/0001")                   # from every version

Vectors of two model versions never share a table: a version's embedding space is its own
(a probe-trained version shares its base's, see `service.search`), so searching one version
cannot return another's windows and indexing with a new version is an explicit new table.

LanceDB keeps the rows: it commits every write as a new table version, so readers in other
processes (the service while `actserve batch` indexes) never see half a write, appends from
several processes do not lose each other's rows, and deletes by video are one predicate.
Searches run on a snapshot of a table version in memory (its vectors and their norms): exact
cosine over the candidates while they are fewer than `ann_min_rows`, else FAISS's IVF-Flat
index over the unit vectors, built once per table version and saved beside the table (a
filter is a FAISS ID selector). A probe's head scores the same snapshot. benchmarks/search.py
measured LanceDB's own IVF search, FAISS and hnswlib; docs/search.md has the figures.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from window_index.errors import InvalidQuery, NotIndexed, WrongSpace

#: Windows below which a search scans every candidate exactly: 50 k windows of 128 floats
#: take a few ms. From there, FAISS's IVF index answers unless a filter leaves fewer.
ANN_MIN_ROWS = 50_000
#: IVF lists probed per query (of about √N; benchmarks/search.py measured recall@10 with it).
NPROBE = 48
#: Seconds a snapshot is searched before the table's version is checked again (writes by
#: other processes show within this; this object's own writes at once).
RECHECK_S = 1.0
#: A video id: what the caller names its video by (a path, a URI, a key); printable.
MAX_VIDEO_ID = 1024
_TABLE = re.compile(r"(?P<model>.+)--v(?P<version>[0-9]+)")


@dataclass(frozen=True, order=True)
class Space:
    """The model version whose network produced a table's vectors."""

    model: str
    version: int

    @property
    def table(self) -> str:
        return f"{self.model}--v{self.version}"

    @classmethod
    def from_table(cls, name: str) -> Space | None:
        found = _TABLE.fullmatch(name)
        return cls(found["model"], int(found["version"])) if found else None

    def __str__(self) -> str:
        return f"{self.model}@{self.version}"


@dataclass(frozen=True)
class Windows:
    """Back-to-back windows of videos: ids, seconds and one embedding per window."""

    video_ids: np.ndarray  # (N,) object (str)
    start_s: np.ndarray  # (N,) float64
    end_s: np.ndarray  # (N,) float64
    vectors: np.ndarray  # (N, D) float32, as the model computed them (not normalised)
    uris: np.ndarray | None = None  # (N,) object (str or None)

    def __len__(self) -> int:
        return len(self.start_s)

    @classmethod
    def of_video(
        cls,
        video_id: str,
        start_s: Sequence[float],
        end_s: Sequence[float],
        vectors: np.ndarray,
        *,
        uri: str | None = None,
    ) -> Windows:
        n = len(start_s)
        return cls(
            np.full(n, video_id, dtype=object),
            np.asarray(start_s, dtype=np.float64),
            np.asarray(end_s, dtype=np.float64),
            np.asarray(vectors, dtype=np.float32).reshape(n, -1),
            np.full(n, uri, dtype=object),
        )


@dataclass(frozen=True)
class Filters:
    """Which windows a search may return: of these videos (None: all), overlapping
    [`from_s`, `to_s`) of their video's time."""

    videos: tuple[str, ...] | None = None
    from_s: float | None = None
    to_s: float | None = None

    def where(self) -> str | None:
        """The filter as LanceDB's SQL predicate (None when it filters nothing)."""
        clauses = []
        if self.videos is not None:
            if not self.videos:
                raise InvalidQuery("an empty list of videos matches nothing")
            clauses.append(f"video_id IN ({', '.join(_quoted(v) for v in self.videos)})")
        for name, value in (("from_s", self.from_s), ("to_s", self.to_s)):
            if value is not None and not math.isfinite(value):
                raise InvalidQuery(f"{name} must be a finite number of seconds")
        if self.from_s is not None and self.to_s is not None and self.to_s <= self.from_s:
            raise InvalidQuery(f"to_s ({self.to_s}) must be after from_s ({self.from_s})")
        if self.from_s is not None:
            clauses.append(f"end_s > {float(self.from_s)!r}")
        if self.to_s is not None:
            clauses.append(f"start_s < {float(self.to_s)!r}")
        return " AND ".join(clauses) or None


@dataclass(frozen=True)
class Hit:
    """One window a search found, with its score (cosine similarity, or a class's
    probability) and, for a class search, the class."""

    video_id: str
    start_s: float
    end_s: float
    score: float
    label: str | None = None


@dataclass
class _Snapshot:
    """One table version in memory: its windows, their vectors' norms, and (from
    `ann_min_rows` windows on) an IVF index over the unit vectors."""

    version: int
    windows: Windows
    norms: np.ndarray
    ann: object | None = None  # faiss.IndexIVFFlat
    checked: float = field(default_factory=time.monotonic)


@dataclass
class WindowIndex:
    """The window embeddings under `root` (a LanceDB database: one table per `Space`)."""

    root: Path
    ann_min_rows: int = ANN_MIN_ROWS
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _snapshots: dict[Space, _Snapshot] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        import lancedb

        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._db = lancedb.connect(str(self.root))

    # ------------------------------------------------------------------------------ reading

    def spaces(self) -> dict[Space, int]:
        """Every model version with windows here, and its window count."""
        found = {}
        for name in self._db.list_tables().tables:
            space = Space.from_table(name)
            if space is not None:
                found[space] = self._db.open_table(name).count_rows()
        return dict(sorted(found.items()))

    def videos(self, space: Space) -> dict[str, int]:
        """Every video of `space` and its window count."""
        column = self._table(space).to_arrow().column("video_id").to_numpy(zero_copy_only=False)
        ids, counts = np.unique(column.astype(str), return_counts=True)
        return dict(zip(ids.tolist(), counts.tolist(), strict=True))

    def search(
        self, space: Space, vector: np.ndarray, *, k: int, filters: Filters = Filters()
    ) -> list[Hit]:
        """The `k` windows of `space` nearest to `vector` by cosine similarity, best first."""
        filters.where()  # validates
        snapshot = self._snapshot(space)
        windows = snapshot.windows
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if len(windows) and vector.shape[0] != windows.vectors.shape[1]:
            raise WrongSpace(
                f"the index of {space} holds {windows.vectors.shape[1]}-wide embeddings, not "
                f"{vector.shape[0]}-wide ones"
            )
        if not np.isfinite(vector).all():
            raise InvalidQuery("the query embedding is not finite")
        norm = float(np.linalg.norm(vector))
        if norm == 0:
            raise InvalidQuery("the query embedding is all zeros: it has no direction")
        unit = vector / norm
        keep = _mask(windows, filters)
        candidates = len(windows) if keep is None else int(keep.sum())
        if snapshot.ann is not None and candidates >= self.ann_min_rows:
            ids, scores = _ann_search(snapshot.ann, unit, k, keep)
        else:
            ids, scores = _exact_search(snapshot, unit, k, keep)
        return [
            Hit(
                str(windows.video_ids[i]),
                float(windows.start_s[i]),
                float(windows.end_s[i]),
                float(score),
            )
            for i, score in zip(ids, scores, strict=True)
        ]

    def window(self, space: Space, video_id: str, at_s: float) -> tuple[np.ndarray, Hit]:
        """The stored window of `video_id` that covers `at_s` seconds (of two that meet
        there, the later), as (vector, its place)."""
        check_video_id(video_id)
        if not math.isfinite(at_s) or at_s < 0:
            raise InvalidQuery(f"at_s must be a number of seconds ≥ 0, not {at_s}")
        rows = (
            self._table(space)
            .search()
            .where(
                f"video_id = {_quoted(video_id)} AND start_s <= {float(at_s)!r} "
                f"AND end_s >= {float(at_s)!r}"
            )
            .select(["start_s", "end_s", "vector"])
            .limit(None)
            .to_arrow()
        )
        if rows.num_rows == 0:
            known = self._table(space).count_rows(f"video_id = {_quoted(video_id)}")
            what = f"no window at {at_s} s" if known else "no windows"
            raise NotIndexed(f"{what} of video {video_id!r} in the index of {space}")
        last = int(np.argmax(rows.column("start_s").to_numpy()))
        vector = np.asarray(rows.column("vector")[last].as_py(), dtype=np.float32)
        start, end = rows.column("start_s")[last].as_py(), rows.column("end_s")[last].as_py()
        return vector, Hit(video_id, start, end, 1.0)

    def scan(self, space: Space, filters: Filters = Filters()) -> Windows:
        """Every window of `space` that passes `filters`, vectors included (from the
        in-memory snapshot of the table's current version)."""
        filters.where()  # validates
        windows = self._snapshot(space).windows
        keep = _mask(windows, filters)
        if keep is None:
            return windows
        return Windows(
            windows.video_ids[keep],
            windows.start_s[keep],
            windows.end_s[keep],
            windows.vectors[keep],
            None if windows.uris is None else windows.uris[keep],
        )

    def _snapshot(self, space: Space) -> _Snapshot:
        """The table's current version in memory, read (and its IVF index built or loaded)
        when the version changed since the last search. Writes through this object are seen
        at once; other processes' within `RECHECK_S`."""
        snapshot = self._snapshots.get(space)
        if snapshot is not None and time.monotonic() - snapshot.checked < RECHECK_S:
            return snapshot
        table = self._table(space)
        with self._lock:
            snapshot = self._snapshots.get(space)
            if snapshot is not None and snapshot.version == table.version:
                snapshot.checked = time.monotonic()
                return snapshot
            version = table.version
            windows = _windows(table.to_arrow())
            norms = np.linalg.norm(windows.vectors, axis=1)
            ann = None
            if len(windows) >= self.ann_min_rows:
                ann = self._ann(space, version, windows.vectors, norms)
            snapshot = self._snapshots[space] = _Snapshot(version, windows, norms, ann)
            return snapshot

    def _ann(self, space: Space, version: int, vectors: np.ndarray, norms: np.ndarray):
        """FAISS IVF-Flat over the unit vectors of one table version: loaded from beside
        the table when saved for that version, else trained, filled and saved."""
        import faiss

        path = self.root / f"{space.table}.ivf"
        stamp = self.root / f"{space.table}.ivf.version"
        if path.exists() and stamp.exists() and stamp.read_text().strip() == str(version):
            index = faiss.read_index(str(path))
            if index.ntotal == len(vectors):
                return index
        index = build_ivf(vectors, norms)
        tmp = path.with_suffix(".ivf.tmp")
        faiss.write_index(index, str(tmp))
        tmp.replace(path)
        stamp.write_text(str(version))
        return index

    # ------------------------------------------------------------------------------ writing

    def add_video(self, space: Space, video_id: str, windows: Windows, *, profile: str) -> int:
        """Store a video's windows in `space`, replacing any it had there; returns the
        count. The first write to a space creates its table, sized to the vectors."""
        check_video_id(video_id)
        if len(windows) == 0:
            raise InvalidQuery(f"video {video_id!r} has no windows to index")
        vectors = np.ascontiguousarray(windows.vectors, dtype=np.float32)
        if not np.isfinite(vectors).all():
            raise InvalidQuery(f"video {video_id!r} has an embedding that is not finite")
        dim = vectors.shape[1]
        import pyarrow as pa

        rows = pa.table(
            {
                "video_id": pa.array([video_id] * len(windows), pa.string()),
                "uri": pa.array(
                    [None] * len(windows) if windows.uris is None else list(windows.uris),
                    pa.string(),
                ),
                "start_s": pa.array(windows.start_s, pa.float64()),
                "end_s": pa.array(windows.end_s, pa.float64()),
                "profile": pa.array([profile] * len(windows), pa.string()),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim),
            }
        )
        with self._lock:
            if space.table in self._db.list_tables().tables:
                table = self._db.open_table(space.table)
                self._check_dim(table, dim, space)
                table.delete(f"video_id = {_quoted(video_id)}")
                table.add(rows)
            else:
                self._db.create_table(space.table, rows)
            self._stale(space)
        return len(windows)

    def delete_video(self, video_id: str, space: Space | None = None) -> dict[Space, int]:
        """Remove a video's windows from `space` (None: from every space); returns how many
        went from each."""
        check_video_id(video_id)
        removed = {}
        with self._lock:
            for found in [space] if space is not None else list(self.spaces()):
                table = self._table(found)
                count = table.count_rows(f"video_id = {_quoted(video_id)}")
                if count:
                    table.delete(f"video_id = {_quoted(video_id)}")
                    removed[found] = count
                    self._stale(found)
        return removed

    def drop(self, space: Space) -> int:
        """Remove every window of `space`; returns how many there were."""
        with self._lock:
            count = self._table(space).count_rows()
            self._db.drop_table(space.table)
            self._snapshots.pop(space, None)
            for leftover in self.root.glob(f"{space.table}.ivf*"):
                leftover.unlink()
        return count

    def optimize(self, space: Space) -> None:
        """Compact the table's files (every write adds one) and prepare its snapshot, IVF
        index included, so the next search need not."""
        table = self._table(space)
        with self._lock:
            table.optimize()
        self._snapshot(space)

    # ------------------------------------------------------------------------------ helpers

    def _stale(self, space: Space) -> None:
        snapshot = self._snapshots.get(space)
        if snapshot is not None:
            snapshot.checked = -math.inf

    def _table(self, space: Space):  # -> lancedb.table.Table
        if space.table not in self._db.list_tables().tables:
            others = ", ".join(str(s) for s in self.spaces()) or "nothing"
            raise NotIndexed(f"no windows of {space} in the index (it holds {others})")
        return self._db.open_table(space.table)

    @staticmethod
    def _check_dim(table, dim: int, space: Space) -> None:
        width = table.schema.field("vector").type.list_size
        if width != dim:
            raise WrongSpace(
                f"the index of {space} holds {width}-wide embeddings, not {dim}-wide ones"
            )


def check_video_id(video_id: str) -> str:
    """A video id is 1-1024 printable characters."""
    if (
        not isinstance(video_id, str)
        or not 0 < len(video_id) <= MAX_VIDEO_ID
        or not video_id.isprintable()
    ):
        raise InvalidQuery(f"a video id is 1-{MAX_VIDEO_ID} printable characters, not {video_id!r}")
    return video_id


def build_ivf(vectors: np.ndarray, norms: np.ndarray):  # -> faiss.IndexIVFFlat
    """An inner-product IVF-Flat index over the unit vectors (cosine), ids = row numbers:
    about √N lists, trained on up to 64 vectors a list."""
    import faiss

    count, dim = vectors.shape
    lists = max(1, int(math.sqrt(count)))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(0).choice(count, min(count, 64 * lists), replace=False)
    index.train(_unit(vectors[np.sort(sample)], norms[np.sort(sample)]))
    for start in range(0, count, 100_000):
        part = slice(start, start + 100_000)
        index.add(_unit(vectors[part], norms[part]))
    return index


def _exact_search(snapshot: _Snapshot, unit: np.ndarray, k: int, keep: np.ndarray | None):
    """Cosine similarity to every candidate; the `k` best, best first."""
    vectors, norms = snapshot.windows.vectors, snapshot.norms
    rows = None if keep is None else np.flatnonzero(keep)
    if rows is not None:
        vectors, norms = vectors[rows], norms[rows]
    similarity = (vectors @ unit) / np.maximum(norms, 1e-12)
    top = np.argpartition(-similarity, k)[:k] if k < len(similarity) else np.arange(len(similarity))
    top = top[np.lexsort((top, -similarity[top]))]  # best first, ties in row order
    return (top if rows is None else rows[top]), similarity[top]


def _ann_search(index, unit: np.ndarray, k: int, keep: np.ndarray | None):
    import faiss

    selector = None
    if keep is not None:
        bits = np.packbits(keep, bitorder="little")
        selector = faiss.IDSelectorBitmap(len(keep), faiss.swig_ptr(bits))
    params = faiss.SearchParametersIVF(nprobe=min(NPROBE, index.nlist), sel=selector)
    scores, ids = index.search(unit[None].astype(np.float32), k, params=params)
    found = ids[0] >= 0
    return ids[0][found], scores[0][found]


def _unit(vectors: np.ndarray, norms: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12)[:, None], dtype=np.float32)


def _mask(windows: Windows, filters: Filters) -> np.ndarray | None:
    """Which windows pass `filters` (None: all)."""
    keep = None
    if filters.videos is not None:
        keep = np.isin(windows.video_ids, np.array(filters.videos, dtype=object))
    if filters.from_s is not None:
        after = windows.end_s > filters.from_s
        keep = after if keep is None else keep & after
    if filters.to_s is not None:
        before = windows.start_s < filters.to_s
        keep = before if keep is None else keep & before
    return keep


def _quoted(value: str) -> str:
    """A SQL string literal."""
    return "'" + check_video_id(value).replace("'", "''") + "'"


def _windows(rows) -> Windows:  # a pyarrow.Table
    vectors = rows.column("vector").combine_chunks()
    dim = vectors.type.list_size
    flat = vectors.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return Windows(
        rows.column("video_id").to_numpy(zero_copy_only=False).astype(object),
        rows.column("start_s").to_numpy(),
        rows.column("end_s").to_numpy(),
        flat.reshape(len(rows), dim),
        rows.column("uri").to_numpy(zero_copy_only=False).astype(object),
    )
