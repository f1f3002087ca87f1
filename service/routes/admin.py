"""Admin endpoints: load, unload, promote, roll back, reload. Mounted only when
ACTSERVE_ADMIN_TOKEN is set; every call needs it as a bearer token. Nothing is ever fetched
by URL: versions come from the configured store only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.security import HTTPBearer

from model_store import IntegrityError
from service.deps import AdminDep, EngineDep
from service.errors import (
    BadRequest,
    Conflict,
    ModelLoadError,
    ModelNotLoaded,
    Unauthorized,
    openapi_errors,
)
from service.schemas import AdminResult, ErrorResponse, PromoteRequest

#: Declares the bearer scheme in the OpenAPI document (the /docs "Authorize" button); the
#: check itself is `require_admin`'s.
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="admin token",
    description="The value of ACTSERVE_ADMIN_TOKEN, sent as `Authorization: Bearer <token>`.",
)

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[AdminDep, Depends(bearer)],
    responses=openapi_errors(
        ErrorResponse, BadRequest, Unauthorized, ModelNotLoaded, ModelLoadError, IntegrityError
    ),
)

Name = Annotated[str, Path(description="A model name in the store.", examples=["r3d_18"])]
Version = Annotated[int, Path(ge=1, description="A version number of the model.", examples=[2])]
CONFLICT = openapi_errors(ErrorResponse, Conflict)


def _result(engine: EngineDep, message: str) -> AdminResult:
    return AdminResult(message=message, loaded=[m.key for m in engine.models.loaded()])


@router.post("/models/{name}/versions/{version}/load", response_model=AdminResult)
async def load_version(name: Name, version: Version, engine: EngineDep) -> AdminResult:
    """Load a version so requests can ask for it by number.

    The files are checked against the manifest's sha256 sums, the runtime is created and every
    warm-up batch size runs once before the call returns. Routing does not change: requests
    without `version` still get the alias or default target. The version stays loaded (even
    when no alias points at it) until it is unloaded."""
    loaded = await engine.models.load(name, version)
    return _result(engine, f"{loaded.key} loaded in {loaded.load_seconds:.1f} s")


@router.post(
    "/models/{name}/versions/{version}/unload", response_model=AdminResult, responses=CONFLICT
)
async def unload_version(name: Name, version: Version, engine: EngineDep) -> AdminResult:
    """Unload a version that was loaded by number.

    Its requests in flight finish first (drain), then the runtime is freed. A version that the
    default route or an alias targets is refused with 409: promote another version first."""
    await engine.models.unload(name, version)
    return _result(engine, f"{name}@{version} draining, then freed")


@router.post("/models/{name}/promote", response_model=AdminResult)
async def promote_version(name: Name, body: PromoteRequest, engine: EngineDep) -> AdminResult:
    """Point an alias at a version, without dropping a request.

    The version is loaded, verified and warmed first; then the alias moves in the store (its
    previous target goes on the alias's history, for rollback) and traffic follows; then the
    previous target drains and is freed. The alias `stable` is what requests naming only the
    model get."""
    await engine.models.promote(name, body.version, body.alias)
    return _result(engine, f"{name}@{body.alias} → version {body.version}")


@router.post("/models/{name}/rollback", response_model=AdminResult)
async def rollback_alias(
    name: Name,
    engine: EngineDep,
    alias: Annotated[
        str, Query(description="The alias to move back.", examples=["stable", "canary"])
    ] = "stable",
) -> AdminResult:
    """Point an alias back at its previous version.

    The previous version is loaded and warmed before the switch, as in a promote. 404 when
    the alias has no earlier version."""
    version = await engine.models.rollback(name, alias)
    return _result(engine, f"{name}@{alias} → version {version}")


@router.delete("/models/{name}/aliases/{alias}", response_model=AdminResult)
async def delete_alias(
    name: Name,
    alias: Annotated[str, Path(description="The alias to delete.", examples=["canary"])],
    engine: EngineDep,
) -> AdminResult:
    """Delete an alias, so that it pins no version.

    Requests naming the alias get 404 from now on; the version it kept loaded (when no other
    route or load needs it) drains and is freed. Deleting `stable` routes requests that name
    only the model to the newest version (loaded and warmed before the switch)."""
    version = await engine.models.delete_alias(name, alias)
    return _result(engine, f"alias {name}@{alias} deleted (was version {version})")


@router.post("/reload", response_model=AdminResult)
async def reload_store(engine: EngineDep) -> AdminResult:
    """Re-read the store for every served model.

    Follows the aliases that `actserve models promote` or `rollback` moved on disk (or another
    replica's admin call, on a shared store): new targets are loaded and warmed, then traffic
    moves, then versions no route needs are drained and freed."""
    await engine.models.reload()
    return _result(engine, "routes re-read from the store")
