"""`actserve export-hf`: a `transformers` video classifier (VideoMAE, TimeSformer, ViViT) to a
checked ONNX store version (the `hf` extra)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from actserve.commands.export import StoreOption
from actserve.console import console, fail, rich_step
from model_store.spec import Profile


def export_hf(
    source: Annotated[
        str, typer.Argument(help="A save_pretrained directory, or a Hub id (needs network).")
    ],
    store: StoreOption,
    name: Annotated[
        str | None, typer.Option(help="Store name (default: the source's last path part).")
    ] = None,
    dataset: Annotated[
        str, typer.Option(help="Whose test protocol: kinetics, or ssv2 (VideoMAE).")
    ] = "kinetics",
    num_clips: Annotated[int | None, typer.Option(help="Override the protocol's clips.")] = None,
    num_crops: Annotated[int | None, typer.Option(help="Override the protocol's crops.")] = None,
    frame_interval: Annotated[
        int | None, typer.Option(help="Override the protocol's frame interval.")
    ] = None,
    alias: Annotated[str | None, typer.Option(help="Point this alias at the new version.")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 18,
    description: Annotated[str, typer.Option(help="Free text kept in the manifest.")] = "",
    default_profile: Annotated[
        Profile, typer.Option(help="The service's profile when a request names none.")
    ] = Profile.ACCURATE,
) -> None:
    """Export a transformers VideoMAE, TimeSformer or ViViT classifier to ONNX, check it
    against the transformers model (fp32, 1e-5 relative) and publish a new store version whose
    recipe comes from the model's image processor and its paper's test protocol."""
    from exporters import ExportError
    from exporters.hf import export_hf as export
    from model_store import ModelStore, StoreError

    overrides: dict[str, Any] = {
        k: v
        for k, v in (
            ("num_clips", num_clips),
            ("num_crops", num_crops),
            ("frame_interval", frame_interval),
        )
        if v is not None
    }
    try:
        manifest = export(
            source,
            ModelStore(store),
            name=name,
            dataset=dataset,
            recipe_overrides=overrides,
            alias=alias,
            opset=opset,
            description=description,
            default_profile=default_profile,
            step=rich_step,
        )
    except (ExportError, StoreError, ValueError) as exc:
        raise fail(str(exc)) from None
    report = manifest.artifacts[0].parity
    table = Table("output", "batch", "max abs diff", "max rel diff", "top-1 agreement")
    for check in report.checks:
        top1 = f"{check.top1_agreement:.0%}" if check.top1_agreement is not None else "-"
        table.add_row(
            check.output,
            str(check.batch_size),
            f"{check.max_abs_diff:.2g}",
            f"{check.max_rel_diff:.2g} (≤ {report.tolerance:g})",
            top1,
        )
    console.print(table)
    console.print(f"recipe: {manifest.spec.recipe.describe()}")
    console.print(f"  from: {manifest.spec.recipe.source}")
    target = f", alias {alias!r}" if alias else ""
    console.print(
        f"published [bold]{manifest.name}[/] version {manifest.version}{target} in {store}"
    )
