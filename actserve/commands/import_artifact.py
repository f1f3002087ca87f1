"""`actserve import-artifact`: publish an ONNX or TorchScript video classifier from elsewhere,
with the recipe its publisher declares (validated, parity "declared, not checked")."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from actserve.commands.export import StoreOption
from actserve.console import console, fail, rich_step
from model_store.labels import list_label_sets
from model_store.spec import Layout, Profile, ResizeFilter, Sampling


def import_artifact(
    artifact: Annotated[Path, typer.Argument(help="model.onnx, or a TorchScript model.pt.")],
    name: Annotated[str, typer.Option(help="Store name of the model.")],
    store: StoreOption,
    labels: Annotated[
        str | None,
        typer.Option(help="A file with one class name per line, or a bundled label set name."),
    ] = None,
    recipe: Annotated[
        Path | None,
        typer.Option(help="A TOML file of recipe fields, with an optional [tensors] table."),
    ] = None,
    layout: Annotated[Layout | None, typer.Option(help="The input's axes order.")] = None,
    clip_len: Annotated[int | None, typer.Option(help="Frames per clip.")] = None,
    frame_interval: Annotated[int | None, typer.Option(help="Stride between frames.")] = None,
    num_clips: Annotated[int | None, typer.Option(help="Clips per video (accurate).")] = None,
    num_crops: Annotated[int | None, typer.Option(help="Crops per clip: 1 or 3.")] = None,
    sampling: Annotated[Sampling | None, typer.Option(help="The temporal sampler.")] = None,
    short_side: Annotated[int | None, typer.Option(help="Resize the short side to this.")] = None,
    crop_size: Annotated[int | None, typer.Option(help="Square crop side.")] = None,
    resize_filter: Annotated[ResizeFilter | None, typer.Option(help="Resize filter.")] = None,
    pixel_scale: Annotated[float | None, typer.Option(help="1 or 255: pixels scaled to.")] = None,
    mean: Annotated[str | None, typer.Option(help="Per-channel mean, e.g. 0.45,0.45,0.45.")] = None,
    std: Annotated[
        str | None, typer.Option(help="Per-channel std, e.g. 0.225,0.225,0.225.")
    ] = None,
    input_name: Annotated[
        str | None, typer.Option(help="The clips' input (default: the graph's only input).")
    ] = None,
    logits_output: Annotated[
        str | None,
        typer.Option(help="The logits output (ONNX name; TorchScript dict key or position)."),
    ] = None,
    embedding_output: Annotated[
        str | None,
        typer.Option(help="The embedding (ONNX: an output or any intermediate tensor)."),
    ] = None,
    backbone: Annotated[str, typer.Option(help="What the network is, for people.")] = "imported",
    alias: Annotated[str | None, typer.Option(help="Point this alias at the new version.")] = None,
    description: Annotated[str, typer.Option(help="Free text kept in the manifest.")] = "",
    default_profile: Annotated[
        Profile, typer.Option(help="The service's profile when a request names none.")
    ] = Profile.ACCURATE,
) -> None:
    """Publish a video classifier actserve did not export: validate it against the declared
    recipe and labels (shapes, one synthetic inference) and store it with its parity
    "declared, not checked". Flags override the recipe file's fields."""
    from exporters import ExportError
    from exporters.import_artifact import (
        build_recipe,
        import_artifact,
        read_labels,
        read_recipe_file,
    )
    from model_store import ModelStore, StoreError

    try:
        declared: dict[str, Any] = {"recipe": {}, "tensors": {}}
        if recipe is not None:
            declared = read_recipe_file(recipe)
        flags = {
            "layout": layout,
            "clip_len": clip_len,
            "frame_interval": frame_interval,
            "num_clips": num_clips,
            "num_crops": num_crops,
            "sampling": sampling,
            "short_side": short_side,
            "crop_size": crop_size,
            "resize_filter": resize_filter,
            "pixel_scale": pixel_scale,
            "mean": _floats(mean, "--mean"),
            "std": _floats(std, "--std"),
        }
        fields = {**declared["recipe"], **{k: v for k, v in flags.items() if v is not None}}
        tensors = {
            **declared["tensors"],
            **{
                k: v
                for k, v in (
                    ("input", input_name),
                    ("logits", logits_output),
                    ("embedding", embedding_output),
                )
                if v is not None
            },
        }
        label_names, label_set = None, None
        if labels in list_label_sets():
            label_set = labels
        elif labels is not None:
            label_names = read_labels(Path(labels))
        manifest = import_artifact(
            artifact,
            ModelStore(store),
            name=name,
            recipe=build_recipe(fields),
            labels=label_names,
            label_set=label_set,
            tensors=tensors,
            backbone=backbone,
            alias=alias,
            description=description,
            default_profile=default_profile,
            step=rich_step,
        )
    except (ExportError, StoreError, ValueError) as exc:
        raise fail(str(exc)) from None
    spec = manifest.spec
    target = f", alias {alias!r}" if alias else ""
    console.print(
        f"published [bold]{manifest.name}[/] version {manifest.version}{target} in {store}: "
        f"{spec.num_classes} classes, embedding {spec.embedding_dim}, "
        f"{spec.recipe.layout} input {spec.tensors.input!r}; parity declared, not checked"
    )


def _floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise fail(f"{flag} takes comma-separated numbers, got {text!r}") from None
