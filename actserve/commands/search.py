"""`actserve search`: moments of an indexed archive (`actserve batch --index`, POST /index)
like a clip or a stored window, or of a probe's classes, on this machine: the index and the
store are read directly, and a query clip is embedded by the service's own pipeline."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from actserve.console import console, fail, rich_step
from model_store import Manifest, ModelStore, StoreError
from model_store.spec import Profile


def search(
    clip: Annotated[
        Path | None,
        typer.Argument(
            help="A query clip (leave out to search by --video/--at or a probe).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="NAME, NAME@VERSION or NAME@ALIAS (default: the store's model); a "
            "probe-trained version without a clip or --video finds its classes."
        ),
    ] = None,
    store: Annotated[
        Path | None,
        typer.Option(envvar="ACTSERVE_STORE", help="Model store (default: the bundled one)."),
    ] = None,
    index_dir: Annotated[
        Path | None, typer.Option(help="The window index (default: ACTSERVE_INDEX_DIR).")
    ] = None,
    video: Annotated[
        str | None, typer.Option(help="Search by this indexed video's window at --at.")
    ] = None,
    at: Annotated[float | None, typer.Option(min=0, help="Seconds into --video.")] = None,
    label: Annotated[
        list[str] | None, typer.Option(help="Class search: classes to find (default: new ones).")
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Class search: lowest probability kept."),
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Moments to show.")] = 10,
    in_video: Annotated[
        list[str] | None, typer.Option(help="Only moments of these videos (repeatable).")
    ] = None,
    from_s: Annotated[float | None, typer.Option(min=0, help="Only windows ending after.")] = None,
    to_s: Annotated[float | None, typer.Option(min=0, help="Only windows starting before.")] = None,
    profile: Annotated[
        Profile | None, typer.Option(help="Views of the query clip (default: the model's).")
    ] = None,
    list_index: Annotated[
        bool, typer.Option("--list", help="List what the index holds, and stop.")
    ] = False,
    delete: Annotated[
        str | None, typer.Option(help="Remove this video's windows from the index, and stop.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the moments as JSON.")] = False,
) -> None:
    """Find moments in the window index: like a clip, like a stored window, or of a
    probe-trained version's classes (its head scores every stored window; nothing decoded)."""
    from service.search import queries
    from service.search.spaces import space_of
    from service.settings import BUNDLED_STORE, Settings
    from window_index import Filters, WindowIndex, WindowIndexError

    settings = Settings(**({"index_dir": index_dir} if index_dir is not None else {}))
    index = WindowIndex(settings.search.dir)
    try:
        if list_index:
            _print_listing(index)
            return
        if delete is not None:
            removed = index.delete_video(delete)
            if not removed:
                raise fail(f"video {delete!r} has no windows in {settings.search.dir}")
            for space, count in removed.items():
                console.print(f"removed {count} windows of {delete} from {space}")
            return
        models = ModelStore(store or BUNDLED_STORE)
        manifest = _resolve(models, model)
        filters = Filters(tuple(in_video) if in_video else None, from_s, to_s)
        header = {"index": str(space_of(manifest)), "model": f"{manifest.name}@{manifest.version}"}
        if clip is not None:
            vector = asyncio.run(_embed(models.root, manifest, clip, profile))
            found = queries.like_vector(index, manifest, vector, top_k=top_k, filters=filters)
            header["query"] = str(clip)
        elif video is not None:
            if at is None:
                raise fail("--video needs --at: the second of the video to search by")
            found, window = queries.like_window(
                index, manifest, video, at, top_k=top_k, filters=filters
            )
            header["query"] = f"{video} {window[0]:.2f}-{window[1]:.2f} s"
        elif manifest.probe is not None:
            found, labels, used, scored = queries.of_classes(
                index,
                models,
                manifest,
                top_k=top_k,
                labels=label,
                threshold=threshold,
                filters=filters,
            )
            header["query"] = f"{', '.join(labels)} at ≥ {used:.2f} ({scored} windows scored)"
        else:
            raise fail(
                "nothing to search by: give a clip, --video and --at, or a probe-trained --model"
            )
    except (WindowIndexError, StoreError) as exc:
        raise fail(str(exc)) from None
    if as_json:
        moments = [vars(m) for m in found]
        console.print_json(json.dumps({**header, "moments": moments}))
        return
    table = Table(
        "#", "video", "from s", "to s", "score", title=f"{header['query']} in {header['index']}"
    )
    if any(m.label for m in found):
        table.add_column("class")
    for rank, moment in enumerate(found, 1):
        cells = [
            str(rank),
            moment.video_id,
            f"{moment.start_s:.2f}",
            f"{moment.end_s:.2f}",
            f"{moment.score:.3f}",
        ]
        table.add_row(
            *cells, *([moment.label or ""] if table.columns[-1].header == "class" else [])
        )
    console.print(table)


def _resolve(models: ModelStore, ref: str | None) -> Manifest:
    from model_store.store import parse_model_ref

    name, version, alias = parse_model_ref(ref) if ref else (None, None, None)
    return models.resolve(name, version=version, alias=alias)


async def _embed(root: Path, manifest: Manifest, clip: Path, profile: Profile | None):
    from actserve.local import LocalPipeline
    from service.engine import RunOptions
    from service.search.embeddings import clip_embedding

    ref = f"{manifest.name}@{manifest.version}"
    with rich_step(f"Embedding {clip.name} with {ref}"):
        async with LocalPipeline(root, ref, workers=1) as local:
            run = await local.classify(clip, RunOptions(profile=profile))
    return clip_embedding(run)


def _print_listing(index) -> None:
    spaces = index.spaces()
    if not spaces:
        console.print(f"{index.root}: empty")
        return
    table = Table("model", "version", "videos", "windows", title=str(index.root))
    for space, count in spaces.items():
        table.add_row(space.model, str(space.version), str(len(index.videos(space))), str(count))
    console.print(table)
