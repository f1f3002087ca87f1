"""`actserve models …`: list, show, promote, roll back and delete store versions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from actserve.commands.export import StoreOption
from actserve.console import console, fail
from model_store import ModelStore, StoreError
from model_store.store import DEFAULT_ALIAS, parse_model_ref

models_app = typer.Typer(help="Manage the versions in a model store.", no_args_is_help=True)
AliasOption = Annotated[str, typer.Option("--alias", help="Alias to move.")]


def _store(path: Path) -> ModelStore:
    if not path.is_dir():
        raise fail(f"no model store at {path}")
    return ModelStore(path)


@models_app.command("list")
def list_versions(store: StoreOption) -> None:
    """Every model with its versions, aliases and the default model."""
    models = _store(store)
    default = models.default_model()
    table = Table("model", "versions", "aliases", "backbone", "trained")
    for name in models.list_models():
        versions = models.list_versions(name)
        aliases = ", ".join(f"{a}→{s.version}" for a, s in models.aliases(name).items())
        latest = models.read_manifest(name, versions[-1]) if versions else None
        table.add_row(
            f"{name} (default)" if name == default else name,
            ", ".join(map(str, versions)) or "-",
            aliases or "-",
            latest.backbone if latest else "-",
            ("yes" if latest.trained else "NO (random weights)") if latest else "-",
        )
    console.print(table)


@models_app.command("show")
def show_version(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@ALIAS.")],
    store: StoreOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole manifest.")] = False,
) -> None:
    """A version's manifest; its files are checked against their recorded sha256."""
    models = _store(store)
    try:
        name, version, alias = parse_model_ref(ref)
        manifest = models.resolve(name, version=version, alias=alias)
        integrity = "ok (every file matches its sha256)"
        try:
            models.verify(manifest.name, manifest.version)
        except StoreError as exc:
            integrity = f"FAILED: {exc}"
    except StoreError as exc:
        raise fail(str(exc)) from None
    if as_json:
        console.print_json(manifest.model_dump_json())
        return
    recipe, spec = manifest.spec.recipe, manifest.spec
    table = Table(show_header=False, box=None)
    table.add_row("model", f"{manifest.name} version {manifest.version}")
    table.add_row("backbone", manifest.backbone)
    table.add_row("trained", "yes" if manifest.trained else "NO: random weights")
    if manifest.description:
        table.add_row("description", manifest.description)
    if manifest.source_checkpoint:
        src = manifest.source_checkpoint
        table.add_row("checkpoint", f"{src.file_name} ({src.layout}, sha256 {src.sha256[:16]}…)")
    table.add_row("created", manifest.created_at.isoformat(timespec="seconds"))
    names = spec.label_set or ("custom labels" if spec.labels else "no labels")
    table.add_row(
        "outputs", f"{spec.num_classes} classes ({names}), embedding {spec.embedding_dim}"
    )
    table.add_row("recipe", recipe.describe())
    for member in manifest.streams:
        weight = manifest.fusion.weights[member.modality]
        flow = member.spec.recipe
        what = f"{member.backbone}, weight {weight:g}, trained: {'yes' if member.trained else 'NO'}"
        if member.modality == "flow":
            what += f", TV-L1 bound {flow.flow_bound:g} px, {flow.frames_per_clip} frames per clip"
        table.add_row(f"{member.modality} stream", what)
    for artifact in manifest.all_artifacts:
        worst = max(c.max_rel_diff for c in artifact.parity.checks)
        table.add_row(
            artifact.file,
            f"{artifact.format} {artifact.precision}, {manifest.files[artifact.file].bytes:,} "
            f"bytes, parity {worst:.2g} on {artifact.parity.runtime}",
        )
    table.add_row("integrity", integrity)
    console.print(table)


@models_app.command("promote")
def promote_version(
    name: str, version: int, store: StoreOption, alias: AliasOption = DEFAULT_ALIAS
) -> None:
    """Point an alias (default: stable) at a version."""
    try:
        state = _store(store).promote(name, version, alias)
    except StoreError as exc:
        raise fail(str(exc)) from None
    previous = f" (was {state.history[-1]})" if state.history else ""
    console.print(f"{name}@{alias} → version {state.version}{previous}")


@models_app.command("rollback")
def rollback_alias(name: str, store: StoreOption, alias: AliasOption = DEFAULT_ALIAS) -> None:
    """Point an alias back at its previous version."""
    try:
        state = _store(store).rollback(name, alias)
    except StoreError as exc:
        raise fail(str(exc)) from None
    console.print(f"{name}@{alias} → version {state.version}")


@models_app.command("delete")
def delete_version(name: str, version: int, store: StoreOption) -> None:
    """Delete a version that no alias points at."""
    try:
        _store(store).delete(name, version)
    except StoreError as exc:
        raise fail(str(exc)) from None
    console.print(f"deleted {name} version {version}")


@models_app.command("default")
def set_default(name: str, store: StoreOption) -> None:
    """Make a model the one the service serves when a request names none."""
    try:
        _store(store).set_default_model(name)
    except StoreError as exc:
        raise fail(str(exc)) from None
    console.print(f"default model: {name}")
