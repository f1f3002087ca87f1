"""`actserve models …`: list, show, promote, roll back, delete and reindex store versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from actserve.commands.export import ReadStoreOption, StoreOption, existing_store
from actserve.console import console, err_console, fail
from model_store import Manifest, ModelStore, StoreError
from model_store.store import DEFAULT_ALIAS, parse_model_ref

models_app = typer.Typer(help="Manage the versions in a model store.", no_args_is_help=True)
AliasOption = Annotated[str, typer.Option("--alias", help="Alias to move.")]


def _store(path: Path) -> ModelStore:
    return ModelStore(existing_store(path))


JsonOption = Annotated[
    bool,
    typer.Option("--json", help="Print the listing as JSON, for scripts (shape: docs/cli.md)."),
]


@models_app.command("list")
def list_versions(store: ReadStoreOption, as_json: JsonOption = False) -> None:
    """Every model with its versions, aliases and the default model. A model whose store
    files cannot be read is listed with the reason, and the command exits 1."""
    models = _store(store)
    try:
        default = models.default_model()
    except StoreError as exc:
        raise fail(str(exc)) from None
    if as_json:
        listing = [_model_listing(models, name, default) for name in models.list_models()]
        console.print_json(
            json.dumps({"store": str(models.root), "default_model": default, "models": listing})
        )
        broken = [problem for model in listing for problem in model["problems"]]
        if broken:
            raise fail("\n".join(broken))
        return
    table = Table("model", "versions", "aliases", "backbone", "trained")
    broken = []
    for name in models.list_models():
        versions = models.list_versions(name)
        try:
            aliases = ", ".join(f"{a}→{s.version}" for a, s in models.aliases(name).items())
            latest = models.read_manifest(name, versions[-1])
        except StoreError as exc:
            broken.append(str(exc))
            table.add_row(name, ", ".join(map(str, versions)), "?", "BROKEN (below)", "?")
            continue
        table.add_row(
            f"{name} (default)" if name == default else name,
            ", ".join(map(str, versions)),
            aliases or "-",
            latest.backbone,
            "yes" if latest.trained else "NO (random weights)",
        )
    console.print(table)
    if broken:
        raise fail("\n".join(broken))


def _model_listing(models: ModelStore, name: str, default: str | None) -> dict[str, Any]:
    """One model of `models list --json`: its aliases and every version, the fields named as
    in GET /models; what the store cannot read is a `broken` version or one of `problems`."""
    problems = []
    try:
        aliases = {alias: state.version for alias, state in models.aliases(name).items()}
    except StoreError as exc:
        aliases, problems = {}, [str(exc)]
    versions: list[dict[str, Any]] = []
    for version in models.list_versions(name):
        named = sorted(alias for alias, target in aliases.items() if target == version)
        try:
            manifest = models.read_manifest(name, version)
        except StoreError as exc:
            problems.append(str(exc))
            versions.append(
                {"version": version, "aliases": named, "state": "broken", "error": str(exc)}
            )
            continue
        spec = manifest.spec
        versions.append(
            {
                "version": version,
                "aliases": named,
                "state": "available",
                "backbone": manifest.backbone,
                "trained": manifest.trained,
                "description": manifest.description,
                "created_at": manifest.created_at.isoformat(),
                "default_profile": manifest.default_profile.value,
                "precision": manifest.precision,
                "num_classes": spec.num_classes,
                "label_set": spec.label_set,
                "embedding_dim": spec.embedding_dim,
            }
        )
    return {
        "name": name,
        "default": name == default,
        "aliases": aliases,
        "versions": versions,
        "problems": problems,
    }


@models_app.command("show")
def show_version(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@ALIAS.")],
    store: ReadStoreOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole manifest.")] = False,
) -> None:
    """A version's manifest, checked against the store's index, and its files against their
    recorded sha256. Exits 1 when the check fails."""
    models = _store(store)
    try:
        name, version, alias = parse_model_ref(ref)
        manifest = models.resolve(name, version=version, alias=alias)
    except StoreError as exc:
        raise fail(str(exc)) from None
    failure = None
    try:
        models.verify(manifest.name, manifest.version)
        if models.is_indexed(manifest.name, manifest.version):
            integrity = "ok (the manifest matches the store's index, every file its sha256)"
        else:
            integrity = (
                "files ok; the manifest itself is unverified (published before the store "
                f"indexed manifests: `actserve models reindex {manifest.name}`)"
            )
    except StoreError as exc:
        failure = str(exc)
        integrity = f"FAILED: {failure}"
    if as_json:
        console.print_json(manifest.model_dump_json())
    else:
        _print_manifest(manifest, integrity)
    if failure is not None:
        raise fail(f"integrity check failed: {failure}")


def _print_manifest(manifest: Manifest, integrity: str) -> None:
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
        digest = manifest.files.get(artifact.file)
        size = f"{digest.bytes:,} bytes" if digest else "no recorded size"
        table.add_row(
            artifact.file,
            f"{artifact.format} {artifact.precision}, {size}, parity {artifact.parity.describe()}",
        )
    if manifest.similarity is not None:
        sim = manifest.similarity
        table.add_row(
            "similarity",
            f"threshold {sim.threshold:.4f} (balanced accuracy {sim.balanced_accuracy:.3f} on "
            f"{sim.pairs} pairs of {sim.source})",
        )
    if manifest.probe is not None:
        probe = manifest.probe
        classes = ", ".join(f"{c}: {n}" for c, n in sorted(probe.videos_per_class.items()))
        table.add_row("probe of", f"{probe.base_model} version {probe.base_version}")
        table.add_row("probe data", f"sha256 {probe.data_sha256}; videos per class: {classes}")
        table.add_row(
            "probe fit",
            f"{probe.classifier}, {probe.profile} profile; {probe.cv_folds}-fold accuracy "
            f"{probe.cv_accuracy:.3f}, p-value {probe.cv_p_value:.3g} against the majority class",
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


@models_app.command("unalias")
def delete_alias(
    name: str,
    alias: Annotated[str, typer.Argument(help="The alias to delete, e.g. canary.")],
    store: StoreOption,
) -> None:
    """Delete an alias, so it pins no version (deleting `stable` routes to the newest). A
    running service follows on POST /admin/reload (or delete it there: DELETE
    /admin/models/NAME/aliases/ALIAS)."""
    try:
        state = _store(store).delete_alias(name, alias)
    except StoreError as exc:
        raise fail(str(exc)) from None
    console.print(f"deleted alias {name}@{alias} (was version {state.version})")


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


@models_app.command("reindex")
def reindex_store(
    store: StoreOption,
    name: Annotated[str | None, typer.Argument(help="One model (default: every model).")] = None,
) -> None:
    """Record in the store's index the manifests of versions published before it kept one, so
    their manifests are verified too. Each version must still match its files and labels;
    those that do not are named, and the command exits 1."""
    models = _store(store)
    refused_any = False
    try:
        for model in [name] if name else models.list_models():
            added, refused = models.reindex(model)
            listed = ", ".join(map(str, added))
            console.print(f"{model}: " + (f"recorded {listed}" if added else "nothing to record"))
            for version, reason in refused.items():
                err_console.print(f"{model} version {version} not recorded: {reason}")
            refused_any = refused_any or bool(refused)
    except StoreError as exc:
        raise fail(str(exc)) from None
    if refused_any:
        raise typer.Exit(1)
