"""Bulk runs over an archive: every video of a folder, glob or list file through the service's
pipeline, one result record per video in a JSON Lines or Parquet file.

    paths = list_inputs("archive/**/*.mp4")     # or "s3://archive/2026/" (remote_inputs)
    with Results(Path("results.jsonl")) as results:
        todo = [key(p) for p in paths if key(p) not in results.done]    # resumable
        async with LocalPipeline(store, "demo-actions") as local:
            await run_batch(local.classify, todo, BatchOptions(), results.write, concurrency=8)

A video that cannot be read gets a record with its error code and message, as the service
would answer it, and the run goes on. Records are written as they come, so a run that is
stopped (Ctrl-C, a crash, a lost machine) resumes where it was by skipping the videos its
output already holds. The same job runs on a Ray cluster (`actserve.batch_ray`).

Inputs may be URIs too (`s3://bucket/prefix/`, `gs://`, `az://`, one `https://` video): they
go through the jobs' resolvers (service/jobs/remote.py) with the same allow-list
(ACTSERVE_JOBS_ALLOWED_INPUTS), SSRF rules and size limit, each video fetched to a temporary
file just before it is classified and removed after.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from actserve.local import VIDEO_SUFFIXES, is_video_file
from model_store.spec import Profile

if TYPE_CHECKING:
    from service.jobs.remote import RemoteFiles

#: Every record has these keys (None where they do not apply), with their Parquet types.
FIELDS = {
    "path": "string",
    "status": "string",  # ok or error
    "model": "string",
    "version": "int64",
    "profile": "string",
    "label": "string",  # top-1
    "score": "float64",
    "top_k": "top_k",  # [{label, index, score}], best first
    "embedding": "list<float32>",  # with --embedding
    "duration_s": "float64",
    "views": "int64",
    "warnings": "list<string>",
    "error": "string",  # the service's error code
    "message": "string",
    "seconds": "float64",  # decode + inference of this video
}


class BatchInputError(Exception):
    """The batch's input names no videos (what is wrong is in the message)."""


@dataclass(frozen=True)
class BatchOptions:
    """What each video's record holds."""

    profile: Profile | None = None  # None: the model's default
    top_k: int = 5
    embedding: bool = False
    #: Every back-to-back window of each video (as `per_clip`), for the window index: the
    #: record's top-k then averages the windows, not the recipe's test views.
    windows: bool = False


def is_uri(spec: str | os.PathLike[str]) -> bool:
    return isinstance(spec, str) and "://" in spec and urlsplit(spec).scheme != "file"


def key(path: str | os.PathLike[str]) -> str:
    """A video's identity in the output: its absolute path, or its URI."""
    return path if is_uri(path) else os.path.abspath(path)  # type: ignore[return-value]


def remote_inputs(directory: Path) -> RemoteFiles:
    """The jobs' URI resolvers, set up from the environment (ACTSERVE_JOBS_ALLOWED_INPUTS,
    ACTSERVE_JOBS_MAX_INPUT_BYTES, the cloud's credentials), downloading into `directory`."""
    from service.jobs.remote import RemoteFiles
    from service.settings import Settings

    return RemoteFiles(Settings().jobs, directory)


def list_inputs(spec: str, remote: RemoteFiles | None = None) -> list[Path] | list[str]:
    """The videos `spec` names: a folder (every video file below it), a glob pattern (`**`
    recursive; every file it matches, video or not), or a list file (one path per line,
    relative to the list's folder; blank lines and `#` comments skipped); with `remote`, an
    object-store prefix (every video object below it) or an https URL."""
    if is_uri(spec):
        if remote is None:
            raise BatchInputError(f"{spec} is a URI: list it with remote inputs")
        try:
            found_uris = remote.list(spec, _video_name)
        except Exception as error:  # refused, missing, unreachable: the message says which
            raise BatchInputError(f"{spec}: {error}") from None
        if not found_uris:
            raise BatchInputError(f"{spec} names no videos")
        return found_uris
    path = Path(spec)
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if is_video_file(p))
    elif glob.has_magic(spec):
        found = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
    elif path.is_file():
        lines = (line.strip() for line in path.read_text().splitlines())
        found = [path.parent / line for line in lines if line and not line.startswith("#")]
    else:
        raise BatchInputError(f"{spec} is not a folder, a glob pattern or a list file")
    if not found:
        raise BatchInputError(f"{spec} names no videos")
    return list(dict.fromkeys(found))  # in order, each once


def _video_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return Path(base).suffix.lower() in VIDEO_SUFFIXES and not base.startswith(".")


def fetching(classify: Callable[..., Any], remote: RemoteFiles) -> Callable[..., Any]:
    """`classify` that takes URIs too: each is downloaded just before and removed after."""

    async def run(path: str, options: Any) -> Any:
        if not is_uri(path):
            return await classify(path, options)
        target = remote.fetched / f"{uuid.uuid4().hex}{Path(urlsplit(path).path).suffix}"
        local = await asyncio.to_thread(remote.download, path, target)
        try:
            return await classify(str(local), options)
        finally:
            local.unlink(missing_ok=True)

    return run


def ok_record(path: str, run: Any, options: BatchOptions, seconds: float) -> dict:
    """The record of a video the engine ran (`run`: an `engine.VideoRun`)."""
    from service.responses import top_labels
    from service.scores import average_probabilities, mean_embedding

    manifest, outputs, decoded = run.loaded.manifest, run.outputs, run.decoded
    best = top_labels(average_probabilities(outputs.logits), manifest.spec, options.top_k)
    return record(
        path,
        status="ok",
        model=manifest.name,
        version=manifest.version,
        profile=str(run.profile),
        label=best[0].label,
        score=best[0].score,
        top_k=[entry.model_dump() for entry in best],
        embedding=mean_embedding(outputs.embedding).tolist() if options.embedding else None,
        duration_s=decoded.info.duration_s or None,
        views=decoded.num_views,
        warnings=list(decoded.warnings),
        seconds=seconds,
    )


def error_record(path: str, error: BaseException, seconds: float) -> dict:
    """The record of a video that failed: the service's error code for it, and why."""
    from service.errors import code_for

    return record(path, status="error", error=code_for(error), message=str(error), seconds=seconds)


def record(path: str, **values: Any) -> dict:
    return {name: values.get(name) for name in FIELDS} | {"path": path}


async def run_batch(
    classify: Callable[[str], Any],
    paths: list[str],
    options: BatchOptions,
    write: Callable[[dict], None],
    *,
    concurrency: int,
    keep: Callable[[str, Any], Awaitable[None]] | None = None,
) -> None:
    """Classify every path (`concurrency` at a time, so decode workers and the batcher stay
    busy) and `write` one record per video as each finishes; nothing raised by one video
    stops the others. `keep(path, run)`, if given, runs on each video's run before its
    record is written (the window index); what it raises is the video's error."""
    from service.engine import RunOptions

    run_options = RunOptions(profile=options.profile, per_clip=options.windows)
    slots = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()

    async def one(path: str) -> None:
        async with slots:
            started = loop.time()
            try:
                run = await classify(path, run_options)
                if keep is not None:
                    await keep(path, run)
            except Exception as error:
                write(error_record(path, error, loop.time() - started))
                return
            write(ok_record(path, run, options, loop.time() - started))

    await asyncio.gather(*(one(p) for p in paths))


class Results:
    """An output file open for a run: the paths it already holds, and `write` for new records.

    JSON Lines are appended and flushed record by record. Parquet cannot be appended to, so
    records go to a journal beside it (`OUT.partial.jsonl`) and the Parquet file is rewritten
    from its old rows and the journal when the run ends (also after Ctrl-C or an error; a
    crash leaves the journal, which the next run reads and folds in).
    """

    def __init__(self, path: Path, *, retry_failed: bool = False) -> None:
        if path.suffix not in (".jsonl", ".parquet"):
            raise BatchInputError(f"write the results as .jsonl or .parquet, not {path.name}")
        self.path = path
        self.parquet = path.suffix == ".parquet"
        self.journal = path.with_name(path.name + ".partial.jsonl") if self.parquet else path
        self.done: set[str] = set()
        self.counts = {"ok": 0, "error": 0}
        #: The failed videos whose records `retry_failed` dropped, to run again.
        self.retrying: set[str] = set()
        if retry_failed:
            self._drop_failed()
        for row in self._old_rows():
            self._count(row)
        self._file = None

    def _drop_failed(self) -> None:
        """Remove the records of failed videos (atomically), so the run classifies them again."""
        rows = list(self._old_rows())
        self.retrying = {row["path"] for row in rows if row["status"] != "ok"}
        if not self.retrying:
            return
        kept = [row for row in rows if row["status"] == "ok"]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        if self.parquet:
            _parquet().write_table(_table(kept), tmp)
        else:
            tmp.write_text("".join(json.dumps(row, allow_nan=False) + "\n" for row in kept))
        os.replace(tmp, self.path)
        if self.parquet:
            self.journal.unlink(missing_ok=True)

    def _old_rows(self) -> Iterator[dict]:
        if self.parquet and self.path.exists():
            yield from _parquet().read_table(self.path).to_pylist()
        if self.journal.exists():
            yield from _read_jsonl(self.journal)

    def _count(self, row: dict) -> None:
        self.done.add(row["path"])
        self.counts[row["status"]] = self.counts.get(row["status"], 0) + 1

    def __enter__(self) -> Results:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.journal.open("a+", encoding="utf-8")
        if self._file.tell():  # a line cut short by a crash stays a line of its own
            self._file.seek(self._file.tell() - 1)
            if self._file.read(1) != "\n":
                self._file.write("\n")
        return self

    def write(self, row: dict) -> None:
        assert self._file is not None, "open the results with `with`"
        self._file.write(json.dumps(row, allow_nan=False) + "\n")
        self._file.flush()
        self._count(row)

    def __exit__(self, *exc_info: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.parquet:
            self._fold_journal()

    def _fold_journal(self) -> None:
        """Rewrite the Parquet file with its old rows and the journal's (atomically), then
        drop the journal."""
        if not self.journal.exists():
            return
        pq = _parquet()
        rows = list(self._old_rows())
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        pq.write_table(_table(rows), tmp)
        os.replace(tmp, self.path)
        self.journal.unlink()


def _read_jsonl(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash: that video is run again


def _parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise BatchInputError(
            "Parquet output needs pyarrow: pip install 'actserve[parquet]' (or write .jsonl)"
        ) from None
    return pq


def _table(rows: list[dict]) -> Any:
    import pyarrow as pa

    score = pa.struct([("label", pa.string()), ("index", pa.int64()), ("score", pa.float64())])
    types = {
        "string": pa.string(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "top_k": pa.list_(score),
        "list<float32>": pa.list_(pa.float32()),
        "list<string>": pa.list_(pa.string()),
    }
    schema = pa.schema([(name, types[kind]) for name, kind in FIELDS.items()])
    return pa.Table.from_pylist([record(**row) for row in rows], schema=schema)
