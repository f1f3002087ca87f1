"""What the store holds and what this process serves."""

from __future__ import annotations

from fastapi import APIRouter

from model_store import Manifest, ModelStore, StoreError
from service.deps import EngineDep, StoreDep
from service.errors import ModelNotLoaded, openapi_errors
from service.loaded_models import ServingSnapshot
from service.schemas import (
    BrokenVersionPublic,
    ErrorResponse,
    ModelPublic,
    ModelsPublic,
    ModelVersionPublic,
)

router = APIRouter(prefix="/models", tags=["models"])


@router.get("", response_model=ModelsPublic)
def list_models(engine: EngineDep, store: StoreDep) -> ModelsPublic:
    """Every model and version in the store with its recipe, labels, artifacts, parity
    reports and load state."""
    snapshot = engine.models.snapshot()
    return ModelsPublic(
        default_model=snapshot.default_model,
        models=[_model_public(store, snapshot, name) for name in store.list_models()],
    )


@router.get(
    "/{name}", response_model=ModelPublic, responses=openapi_errors(ErrorResponse, ModelNotLoaded)
)
def read_model(name: str, engine: EngineDep, store: StoreDep) -> ModelPublic:
    """One model with all its versions."""
    if name not in store.list_models():
        raise ModelNotLoaded(f"no model {name!r} in the store")
    return _model_public(store, engine.models.snapshot(), name)


def _model_public(store: ModelStore, snapshot: ServingSnapshot, name: str) -> ModelPublic:
    """A model's entry; a version (or alias file) the store cannot read is listed with the
    reason instead of failing the whole answer."""
    problems = []
    try:
        aliases = {alias: s.version for alias, s in store.aliases(name).items()}
    except StoreError as error:
        aliases, problems = {}, [f"aliases: {error}"]
    versions: list[ModelVersionPublic | BrokenVersionPublic] = []
    for version in store.list_versions(name):
        named = [a for a, target in aliases.items() if target == version]
        try:
            manifest = store.read_manifest(name, version)
        except StoreError as error:
            versions.append(BrokenVersionPublic(version=version, aliases=named, error=str(error)))
            continue
        versions.append(_version_public(snapshot, manifest, named))
    if name in snapshot.unroutable:
        problems.append(f"not served: {snapshot.unroutable[name]}")
    route = snapshot.routes.get(name)
    return ModelPublic(
        name=name,
        default=name == snapshot.default_model,
        aliases=aliases,
        routed_version=route.default_version if route else None,
        versions=versions,
        problems=problems,
    )


def _version_public(
    snapshot: ServingSnapshot, manifest: Manifest, aliases: list[str]
) -> ModelVersionPublic:
    status = snapshot.status(manifest.name, manifest.version)
    spec = manifest.spec
    return ModelVersionPublic(
        version=manifest.version,
        aliases=aliases,
        state=status.state,
        runtime=status.runtime,
        load_seconds=round(status.load_seconds, 3) if status.load_seconds is not None else None,
        load_error=status.error,
        backbone=manifest.backbone,
        trained=manifest.trained,
        description=manifest.description,
        created_at=manifest.created_at,
        default_profile=manifest.default_profile,
        recipe=spec.recipe,
        num_classes=spec.num_classes,
        label_set=spec.label_set,
        labels_count=len(spec.labels) if spec.labels else 0,
        embedding_dim=spec.embedding_dim,
        precision=manifest.precision,
        precision_agreement=manifest.precision_agreement,
        artifacts=list(manifest.all_artifacts),
        parity=(
            "declared, not checked"
            if any(a.parity.status == "declared" for a in manifest.all_artifacts)
            else "checked"
        ),
        fusion=manifest.fusion,
        similarity=manifest.similarity,
        probe=manifest.probe,
    )
