"""Admin endpoints: load, unload, promote, roll back, reload. Mounted only when
ACTSERVE_ADMIN_TOKEN is set; every call needs it as a bearer token. Nothing is ever fetched
by URL: versions come from the configured store only."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import AdminDep, StateDep
from service.schemas import AdminResult, ErrorResponse, PromoteRequest

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[AdminDep],
    responses={401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}},
)


def _result(state: StateDep, message: str) -> AdminResult:
    return AdminResult(message=message, loaded=[m.key for m in state.models.loaded()])


@router.post("/models/{name}/versions/{version}/load", response_model=AdminResult)
async def load_version(name: str, version: int, state: StateDep) -> AdminResult:
    """Load, verify and warm up a version so it can be asked for by number."""
    loaded = await state.models.load(name, version)
    return _result(state, f"{loaded.key} loaded in {loaded.load_seconds:.1f} s")


@router.post(
    "/models/{name}/versions/{version}/unload",
    response_model=AdminResult,
    responses={409: {"model": ErrorResponse}},
)
async def unload_version(name: str, version: int, state: StateDep) -> AdminResult:
    """Drain and free a version that no alias or default route uses."""
    await state.models.unload(name, version)
    return _result(state, f"{name}@{version} draining, then freed")


@router.post("/models/{name}/promote", response_model=AdminResult)
async def promote_version(name: str, body: PromoteRequest, state: StateDep) -> AdminResult:
    """Point an alias at a version: the version is loaded and warmed first, traffic moves,
    then the previous target drains and is freed."""
    await state.models.promote(name, body.version, body.alias)
    return _result(state, f"{name}@{body.alias} → version {body.version}")


@router.post("/models/{name}/rollback", response_model=AdminResult)
async def rollback_alias(name: str, state: StateDep, alias: str = "stable") -> AdminResult:
    """Point an alias back at its previous version (loaded and warmed before the switch)."""
    version = await state.models.rollback(name, alias)
    return _result(state, f"{name}@{alias} → version {version}")


@router.post("/reload", response_model=AdminResult)
async def reload_store(state: StateDep) -> AdminResult:
    """Re-read the store: follow aliases moved with `actserve models`, load new targets."""
    await state.models.reload()
    return _result(state, "routes re-read from the store")
