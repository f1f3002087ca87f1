"""`actserve zoo` and `actserve checkpoint`: the backbone registry and public checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from actserve.console import console, fail

checkpoint_app = typer.Typer(
    help="Inspect and convert public checkpoint files.", no_args_is_help=True
)


def list_zoo(
    pattern: Annotated[str, typer.Argument(help="Shell-style filter, e.g. 'r3d_*'.")] = "*",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the registered backbones with their default spec."""
    import torch

    from backbones import create_model, list_models

    rows = []
    for name in list_models(pattern):
        with torch.device("meta"):
            model = create_model(name)
        spec = model.spec
        rows.append(
            {
                "model": name,
                "params": sum(p.numel() for p in model.parameters()),
                "input": list(spec.recipe.clip_shape),
                "classes": spec.num_classes,
                "label_set": spec.label_set,
                "embedding_dim": spec.embedding_dim,
            }
        )
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table("model", "params", "input (C,T,H,W)", "classes", "embedding")
    for row in rows:
        table.add_row(
            row["model"],
            f"{row['params'] / 1e6:.2f}M",
            "×".join(map(str, row["input"])),
            f"{row['classes']} ({row['label_set'] or 'no labels'})",
            str(row["embedding_dim"]),
        )
    console.print(table)


@checkpoint_app.command("inspect")
def inspect_checkpoint_file(
    path: Annotated[Path, typer.Argument(help="A public checkpoint file (.pth, .pyth, .pth.tar).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Say which family and model a checkpoint holds, its classes and parameters, and whether
    it loads strictly."""
    from backbones import BackboneError, inspect_checkpoint, load_checkpoint
    from backbones.checkpoints import read_checkpoint

    try:
        container = read_checkpoint(path)  # once: checkpoints run to hundreds of MB
        info = inspect_checkpoint(path, container=container)
    except BackboneError as exc:
        raise fail(str(exc)) from None
    load_error, spec = None, None
    try:
        _, spec = load_checkpoint(path, container=container)
    except BackboneError as exc:
        load_error = str(exc)
    found = info.identified
    report = {
        "file": str(info.path),
        "layout": info.layout.name,
        "layout_description": info.layout.description,
        "model": found.model,
        "alternatives": list(found.alternatives),
        "variant": found.variant,
        "num_classes": found.num_classes,
        "label_set": spec.label_set if spec else None,
        "num_parameters": info.num_parameters,
        "num_tensors": info.num_tensors,
        "state_dict_field": info.state_dict_field,
        "top_level_fields": info.top_level_fields,
        "arch": info.arch,
        "strict_load": "ok" if load_error is None else load_error,
        "recipe": spec.recipe.model_dump(mode="json") if spec else None,
    }
    if as_json:
        console.print_json(json.dumps(report))
    else:
        table = Table(show_header=False, box=None)
        table.add_row("file", report["file"])
        table.add_row("layout", f"{info.layout.name}: {info.layout.description}")
        variant = ", ".join(f"{k}={v}" for k, v in found.variant.items())
        table.add_row("model", f"{found.model} ({variant})" if variant else found.model)
        if found.alternatives:
            others = ", ".join(found.alternatives)
            table.add_row("", f"same tensors as {others}: load_checkpoint(path, model=...)")
        labels = report["label_set"] or "no bundled label set for this class count"
        table.add_row("classes", f"{found.num_classes} ({labels})")
        table.add_row("parameters", f"{info.num_parameters:,} in {info.num_tensors} tensors")
        where = f"under '{info.state_dict_field}'" if info.state_dict_field else "bare state dict"
        fields = ", ".join(info.top_level_fields) or "-"
        table.add_row("container", f"{where}; top-level fields: {fields}")
        if info.arch:
            table.add_row("arch field", info.arch)
        table.add_row("strict load", report["strict_load"])
        if spec:
            table.add_row("test recipe", spec.recipe.describe())
        console.print(table)
    if load_error is not None:
        raise typer.Exit(1)


@checkpoint_app.command("resave")
def resave_checkpoint_file(
    source: Annotated[Path, typer.Argument(help="A checkpoint that needs full pickle to load.")],
    target: Annotated[Path, typer.Argument(help="Where to write the tensors-only copy.")],
    trust: Annotated[
        bool, typer.Option("--trust", help="Confirm you trust SOURCE: loading it runs its code.")
    ] = False,
) -> None:
    """Re-save a trusted checkpoint as tensors and plain fields, loadable with weights_only."""
    from backbones.checkpoints import resave_checkpoint

    if not trust:
        raise fail(
            "loading this file runs arbitrary code from it; pass --trust if you trust its source",
            code=2,
        )
    written = resave_checkpoint(source, target)
    console.print(f"wrote {written} (tensors and plain fields only)")
