"""What the store holds and what this process serves."""

from __future__ import annotations

from fastapi import APIRouter

from model_store import Manifest
from service.deps import AppState, StateDep
from service.errors import ModelNotLoaded
from service.schemas import ErrorResponse, ModelPublic, ModelsPublic, ModelVersionPublic

router = APIRouter(prefix="/models", tags=["models"])


def _version_public(state: AppState, manifest: Manifest, aliases: list[str]) -> ModelVersionPublic:
    loaded = state.models.state_of(manifest.name, manifest.version)
    spec = manifest.spec
    return ModelVersionPublic(
        version=manifest.version,
        aliases=aliases,
        state=loaded.state if loaded is not None else "available",
        runtime=loaded.runtime.description if loaded is not None else None,
        load_seconds=round(loaded.load_seconds, 3) if loaded is not None else None,
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
        artifacts=list(manifest.artifacts),
    )


def _model_public(state: AppState, name: str) -> ModelPublic:
    store = state.models.store
    aliases = {alias: s.version for alias, s in store.aliases(name).items()}
    route = state.models.routes().get(name)
    versions = [
        _version_public(
            state,
            store.read_manifest(name, version),
            [a for a, target in aliases.items() if target == version],
        )
        for version in store.list_versions(name)
    ]
    return ModelPublic(
        name=name,
        default=name == state.models.default_model,
        aliases=aliases,
        routed_version=route.default_version if route else None,
        versions=versions,
    )


@router.get("", response_model=ModelsPublic)
def list_models(state: StateDep) -> ModelsPublic:
    """Every model and version in the store with its recipe, labels, artifacts, parity
    reports and load state."""
    names = state.models.store.list_models()
    return ModelsPublic(
        default_model=state.models.default_model,
        models=[_model_public(state, name) for name in names],
    )


@router.get("/{name}", response_model=ModelPublic, responses={404: {"model": ErrorResponse}})
def read_model(name: str, state: StateDep) -> ModelPublic:
    """One model with all its versions."""
    if name not in state.models.store.list_models():
        raise ModelNotLoaded(f"no model {name!r} in the store")
    return _model_public(state, name)
