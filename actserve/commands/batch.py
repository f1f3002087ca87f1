"""`actserve batch`: classify an archive of videos into a results file (see actserve/batch.py)."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from actserve.commands.export import ReadStoreOption, existing_store
from actserve.console import VideoProgress, console, fail, rich_step
from model_store.spec import Profile

if TYPE_CHECKING:
    from actserve.batch import BatchOptions, Results
    from actserve.local import LocalPipeline


def batch(
    input: Annotated[
        str,
        typer.Argument(
            help="A folder (every video below it), a glob pattern (quote it; ** recurses), "
            "a list file (one path per line), or a URI: an object-store prefix (s3://, gs://, "
            "az://) or an https video, allowed by ACTSERVE_JOBS_ALLOWED_INPUTS."
        ),
    ],
    model: Annotated[str, typer.Option(help="NAME, NAME@VERSION or NAME@ALIAS.")],
    out: Annotated[Path, typer.Option(help="Results: .jsonl or .parquet (resumed if present).")],
    store: ReadStoreOption,
    profile: Annotated[
        Profile | None, typer.Option(help="fast or accurate (default: the model's).")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Classes per video.")] = 5,
    embedding: Annotated[
        bool, typer.Option("--embedding", help="Also record each video's mean embedding.")
    ] = False,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Decode workers (default: one per core).")
    ] = None,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed",
            help="Classify again the videos whose records in --out are errors (their records "
            "are replaced); without it a rerun skips every video already recorded.",
        ),
    ] = False,
    ray: Annotated[bool, typer.Option("--ray", help="Run on a Ray cluster.")] = False,
    ray_address: Annotated[
        str | None,
        typer.Option(help="The Ray cluster (implies --ray; default: RAY_ADDRESS or a local one)."),
    ] = None,
    cpus_per_actor: Annotated[
        int, typer.Option(min=1, help="With Ray: CPUs (decode workers) per model actor.")
    ] = 2,
    index: Annotated[
        bool,
        typer.Option(
            "--index",
            help="Also keep every window's embedding in the window index (for actserve search); "
            "each video's top-k then averages its windows.",
        ),
    ] = False,
    index_dir: Annotated[
        Path | None,
        typer.Option(help="The window index (implies --index; default: ACTSERVE_INDEX_DIR)."),
    ] = None,
) -> None:
    """Classify every video of an archive with the service's pipeline into a results file:
    all cores busy, resumable, a record per video (errors included)."""
    from actserve.batch import (
        BatchInputError,
        BatchOptions,
        Results,
        fetching,
        is_uri,
        key,
        list_inputs,
        remote_inputs,
    )
    from actserve.local import LocalPipeline

    existing_store(store)
    remote, downloads = None, contextlib.nullcontext()
    if is_uri(input):
        downloads = tempfile.TemporaryDirectory(prefix="actserve-batch-")
        remote = remote_inputs(Path(downloads.name))
    if remote is not None and (ray or ray_address):
        raise fail("--ray reads local paths; run URIs without it")
    try:
        paths = [key(p) for p in list_inputs(input, remote)]
        results = Results(out, retry_failed=retry_failed)
    except BatchInputError as exc:
        raise fail(str(exc)) from None
    if results.retrying:
        console.print(f"retrying {len(results.retrying)} videos that failed in {out}")
    todo = [p for p in paths if p not in results.done]
    skipped = len(paths) - len(todo)
    if skipped:
        console.print(f"{skipped} of {len(paths)} videos are already in {out}; skipping them")
    index = index or index_dir is not None
    if index and (ray or ray_address):
        raise fail("--index runs on this machine: leave out --ray")
    options = BatchOptions(profile=profile, top_k=top_k, embedding=embedding, windows=index)
    # Fail early, before workers start, on a model the store does not have.
    try:
        local = LocalPipeline(store, model, workers=workers, max_queue_views=100_000)
    except Exception as exc:
        raise fail(str(exc)) from None
    ref = f"{local.manifest.name}@{local.manifest.version}"

    with results:

        def progress_bar() -> VideoProgress:
            return VideoProgress(ref, len(paths), completed=skipped)

        if not todo:
            pass
        elif ray or ray_address:
            from actserve.batch_ray import run_on_ray

            with progress_bar() as progress:
                run_on_ray(
                    todo,
                    store=store,
                    model=ref,
                    options=options,
                    write=_recording(results, progress),
                    address=ray_address,
                    cpus_per_actor=cpus_per_actor,
                )
        else:
            keeper = _Indexer(index_dir or local.settings.search.dir) if index else None
            classify = fetching(local.classify, remote) if remote else local.classify
            with downloads:
                asyncio.run(
                    _run_locally(local, classify, todo, options, results, progress_bar, keeper)
                )
            if keeper is not None:
                keeper.finish(local.manifest)
    ok, failed = results.counts.get("ok", 0), results.counts.get("error", 0)
    console.print(
        f"{out}: {ok} videos classified, {failed} failed"
        + (" (status error: see their error and message)" if failed else "")
    )


def _recording(results: Results, progress: VideoProgress) -> Callable[[dict], None]:
    """Write a record to the results and count it on the progress bar."""

    def write(row: dict) -> None:
        results.write(row)
        progress.advance(failed=row["status"] != "ok")

    return write


async def _run_locally(
    local: LocalPipeline,
    classify: Callable[..., Any],
    todo: list[str],
    options: BatchOptions,
    results: Results,
    progress_bar: Callable[[], VideoProgress],
    keeper: _Indexer | None = None,
) -> None:
    from actserve.batch import run_batch

    with rich_step(f"Loading {local.manifest.name}@{local.manifest.version} and the decoders"):
        await local.__aenter__()
    try:
        with progress_bar() as progress:
            write = _recording(results, progress)
            await run_batch(
                classify,
                todo,
                options,
                write,
                concurrency=2 * local.workers,
                keep=keeper.keep if keeper is not None else None,
            )
    finally:
        await local.__aexit__()


class _Indexer:
    """Writes each run video's windows into the window index, under its path."""

    def __init__(self, root: Path) -> None:
        from window_index import WindowIndex

        self.root = root
        self.index = WindowIndex(root)
        self.windows = 0

    async def keep(self, path: str, run: object) -> None:
        from service.search import index_windows
        from service.search.embeddings import video_windows

        windows = video_windows(run, path, uri=path)
        _, count = await asyncio.to_thread(
            index_windows,
            self.index,
            run.loaded.manifest,
            windows,
            video_id=path,
            profile=str(run.profile),
        )
        self.windows += count

    def finish(self, manifest: object) -> None:
        from service.search.spaces import space_of

        space = space_of(manifest)
        if self.windows:
            with rich_step(f"Updating the index of {space}"):
                self.index.optimize(space)
        console.print(f"indexed {self.windows} windows into {self.root} ({space})")
