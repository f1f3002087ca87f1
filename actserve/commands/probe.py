"""`actserve probe`: new classes from a folder of labelled videos, as a new model version
whose ONNX is the base network with a fitted linear head (see actserve/probe.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from actserve.commands.export import StoreOption
from actserve.console import VideoProgress, console, err_console, fail, rich_step
from model_store import Manifest, ModelStore, StoreError
from model_store.spec import Profile
from model_store.store import check_alias, check_name, parse_model_ref


def probe(
    base: Annotated[
        str, typer.Option("--base", help="The model to build on: NAME, NAME@VERSION or NAME@ALIAS.")
    ],
    data: Annotated[
        Path, typer.Option("--data", help="A folder with one sub-folder of videos per class.")
    ],
    name: Annotated[str, typer.Option("--name", help="Store name of the new model.")],
    store: StoreOption,
    base_store: Annotated[
        Path | None,
        typer.Option(help="Store holding --base (default: --store, else the bundled demo store)."),
    ] = None,
    profile: Annotated[
        Profile | None, typer.Option(help="Views to embed (default: the base model's).")
    ] = None,
    folds: Annotated[int, typer.Option(min=2, help="Cross-validation folds (at most).")] = 5,
    min_accuracy: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Refuse below this cross-validated accuracy."),
    ] = None,
    alias: Annotated[str | None, typer.Option(help="Point this alias at the new version.")] = (
        "stable"
    ),
    workers: Annotated[
        int | None, typer.Option(min=1, help="Decode workers (default: one per core).")
    ] = None,
    open_set: Annotated[
        bool,
        typer.Option(
            "--open-set",
            help="Calibrate a reject threshold on the cross-validation: embeddings unlike "
            "every class are `unknown` (class searches drop them).",
        ),
    ] = False,
    extend: Annotated[
        bool,
        typer.Option(
            "--extend", help="Keep the base model's classes and add the new ones after them."
        ),
    ] = False,
) -> None:
    """Fit a linear classifier on a model's embeddings of labelled videos (one sub-folder per
    class), report its cross-validated accuracy and publish base network + new head."""
    from actserve.probe import (
        ProbeError,
        calibrate_open_set,
        calibrate_similarity,
        check_classes,
        check_fit,
        extend_head,
        fit_probe,
        mislabelled,
        read_labelled_folder,
    )
    from model_store import ProbeProvenance

    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise fail("actserve probe needs scikit-learn: pip install 'actserve[probe]'") from None
    # What publishing needs, checked before minutes of embedding.
    try:
        check_name(name)
        if alias is not None:
            check_alias(alias)
    except StoreError as exc:
        raise fail(f"--name/--alias: {exc}") from None
    if store.exists() and not store.is_dir():
        raise fail(f"--store {store} is a file, not a model store directory")
    base_manifest, base_root = _find_base(base, store, base_store)
    if base_manifest.streams:
        raise fail(
            f"{base_manifest.name}@{base_manifest.version} is a two-stream version; probe a "
            "one-stream model (its head is edited into one ONNX graph)"
        )
    try:
        folder = read_labelled_folder(data)
    except ProbeError as exc:
        raise fail(str(exc)) from None
    table = Table("class", "videos", title=f"{data}: {len(folder.paths)} videos")
    for label, count in folder.counts().items():
        table.add_row(label, str(count))
    console.print(table)

    profile = profile or base_manifest.default_profile
    embeddings, failed = asyncio.run(
        _embed(base_root, base_manifest, folder.paths, Profile(profile), workers)
    )
    for i, error in sorted(failed.items()):
        err_console.print(f"[yellow]skipped[/] {folder.paths[i]}: {error}", highlight=False)
    usable = sorted(embeddings)
    folder = folder.subset(usable)
    x = [embeddings[i] for i in usable]
    try:
        check_classes(folder)
        with rich_step(f"Cross-validating a linear classifier on {len(x)} embeddings"):
            fit = fit_probe(x, folder.labels, folds=folds)
        check_fit(fit, folder.classes, min_accuracy)
    except ProbeError as exc:
        raise fail(str(exc)) from None
    console.print(
        f"cross-validated accuracy [bold]{fit.cv_accuracy:.1%}[/] ± {fit.cv_accuracy_std:.1%} "
        f"over {fit.folds} folds (largest class {fit.chance:.1%}; binomial test p = "
        f"{fit.p_value:.2g})"
    )
    for path, filed, guessed in mislabelled(fit, folder):
        err_console.print(
            f"[yellow]warning:[/] {path} is in {filed!r} but looks like {guessed!r} to a head "
            "that never saw it: mislabelled, or unlike the rest of its class?",
            highlight=False,
        )
    weight, bias, classes = fit.weight, fit.bias, folder.classes
    if extend:
        from service.search.spaces import linear_head

        base_labels = base_manifest.spec.labels or ()
        clash = sorted(set(base_labels) & set(folder.classes))
        if clash:
            raise fail(
                f"--extend: {', '.join(map(repr, clash))} is already a class of "
                f"{base_manifest.name}@{base_manifest.version}; rename the folder"
            )
        try:
            base_weight, base_bias = linear_head(ModelStore(base_root), base_manifest)
        except Exception as exc:
            raise fail(f"--extend: cannot read the base model's head: {exc}") from None
        weight, bias = extend_head(fit, base_weight, base_bias, x)
        classes = (*base_labels, *folder.classes)
        console.print(
            f"extended {len(base_labels)} base classes with {len(folder.classes)} new ones"
        )
    reject = None
    if open_set:
        reject = calibrate_open_set(x, folder.labels, folds=folds)
        console.print(
            f"open set: below cosine {reject.threshold:.3f} to every class prototype is "
            "unknown (calibrated on the cross-validation's held-out videos)"
        )
    calibration = calibrate_similarity(
        x, folder.labels, source=f"{len(x)} videos of {len(folder.classes)} classes in {data.name}"
    )
    console.print(
        f"similarity threshold {calibration.threshold:.3f} (balanced accuracy "
        f"{calibration.balanced_accuracy:.1%} on {calibration.pairs} pairs)"
    )
    provenance = ProbeProvenance(
        base_model=base_manifest.name,
        base_version=base_manifest.version,
        data_sha256=folder.data_sha256,
        videos_per_class=folder.counts(),
        classifier=fit.classifier,
        profile=profile,
        cv_folds=fit.folds,
        cv_accuracy=fit.cv_accuracy,
        cv_p_value=fit.p_value,
        reject_threshold=reject.threshold if reject else None,
        prototypes=tuple(map(tuple, reject.prototypes.tolist())) if reject else None,
        extends_base=extend,
    )
    description = (
        f"linear probe on {base_manifest.name}@{base_manifest.version}: "
        f"{', '.join(folder.classes)}; cross-validated accuracy {fit.cv_accuracy:.1%} "
        f"over {fit.folds} folds of {len(x)} videos"
    )
    from exporters.errors import ExportError
    from exporters.head import export_head_to_store

    try:
        manifest = export_head_to_store(
            ModelStore(store),
            base_manifest,
            ModelStore(base_root).version_dir(base_manifest.name, base_manifest.version),
            weight,
            bias,
            classes,
            name=name,
            alias=alias,
            description=description,
            similarity=calibration,
            probe=provenance,
            step=rich_step,
        )
    except (StoreError, ValueError, ExportError) as exc:
        raise fail(str(exc)) from None
    console.print(
        f"published [bold]{manifest.name}[/] version {manifest.version} to {store}"
        + (f" (alias {alias})" if alias else "")
        + f"; serve it with ACTSERVE_STORE={store} ACTSERVE_PRELOAD={manifest.name}"
    )


def _find_base(ref: str, store: Path, base_store: Path | None) -> tuple[Manifest, Path]:
    """The base version's manifest (files verified) and the store it is in."""
    from service.settings import BUNDLED_STORE

    roots = [base_store] if base_store is not None else [store, BUNDLED_STORE]
    name, version, alias = parse_model_ref(ref)
    for root in roots:
        models = ModelStore(root)
        if name not in models.list_models():
            continue
        try:
            manifest = models.resolve(name, version=version, alias=alias)
            return models.verify(name, manifest.version), root
        except StoreError as exc:
            raise fail(str(exc)) from None
    raise fail(f"no model {name!r} in {' or '.join(str(r) for r in roots)}")


async def _embed(
    root: Path, base: Manifest, paths: tuple[Path, ...], profile: Profile, workers: int | None
) -> tuple[dict, dict]:
    from actserve.local import LocalPipeline
    from actserve.probe import embed_videos
    from service.engine import RunOptions

    options = RunOptions(profile=profile)
    ref = f"{base.name}@{base.version}"
    with rich_step(f"Loading {ref} and the decode workers"):
        local = await LocalPipeline(root, ref, workers=workers).__aenter__()
    try:
        with VideoProgress(f"embedding with {ref}", len(paths)) as progress:
            return await embed_videos(
                lambda path: local.classify(path, options),
                paths,
                concurrency=2 * local.workers,
                on_done=lambda path, error: progress.advance(failed=error is not None),
            )
    finally:
        await local.__aexit__()
