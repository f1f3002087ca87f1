"""What the routes are given: the engine, the model version a request asks for, who the
client is, the request's count in the metrics, the admin check.

Every dependency here is `async def`: none blocks, and FastAPI runs a plain `def` dependency
in its thread pool, two thread hand-offs per request for a generator (py-spy on a loaded
service: the hand-offs of six such dependencies were ~5% of its event loop's time)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Query, Request

from model_store import ModelStore
from service.engine import Engine
from service.errors import Unauthorized, status_for
from service.loaded_models import LoadedModel
from service.logs import record_of
from service.metrics import NO_MODEL
from service.settings import Settings


async def get_engine(request: Request) -> Engine:
    """The engine the lifespan started (service/app.py)."""
    return request.app.state.engine


async def get_settings(request: Request) -> Settings:
    return request.app.state.engine.settings


async def get_store(request: Request) -> ModelStore:
    return request.app.state.engine.models.store


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[ModelStore, Depends(get_store)]


class RequestOutcome:
    """Which model version a request went to, for `actserve_requests_total` and the
    request's log line."""

    def __init__(self, request: Request | None = None) -> None:
        self.labels = NO_MODEL
        self.record = record_of(request) if request is not None else None

    def served_by(self, loaded: LoadedModel) -> LoadedModel:
        self.labels = loaded.labels
        if self.record is not None:
            self.record.model, self.record.version = loaded.manifest.name, loaded.manifest.version
        return loaded


async def count_request(engine: EngineDep, request: Request) -> AsyncIterator[RequestOutcome]:
    """Count the request under its endpoint, model version and final status, whatever the
    outcome: validation errors and the route's own errors pass through here on their way out."""
    outcome = RequestOutcome(request)
    endpoint = request.scope["route"].path
    engine.metrics.requests_in_flight.inc()
    try:
        yield outcome
    except BaseException as error:
        engine.metrics.count_request(endpoint, outcome.labels, status_for(error))
        raise
    else:
        engine.metrics.count_request(endpoint, outcome.labels, 200)
    finally:
        engine.metrics.requests_in_flight.dec()


OutcomeDep = Annotated[RequestOutcome, Depends(count_request)]

ModelQuery = Annotated[str | None, Query(description="Model name; default: the default model.")]
VersionQuery = Annotated[int | None, Query(ge=1, description="A loaded version number.")]
AliasQuery = Annotated[str | None, Query(description="An alias, e.g. stable or canary.")]


async def resolve_version(
    engine: EngineDep,
    outcome: OutcomeDep,
    model: ModelQuery = None,
    version: VersionQuery = None,
    alias: AliasQuery = None,
) -> LoadedModel:
    """The loaded version a video request asks for (`model`, `version`, `alias`), counted
    under it in the metrics."""
    return outcome.served_by(engine.resolve(model, version, alias))


LoadedDep = Annotated[LoadedModel, Depends(resolve_version)]


async def client_key(engine: EngineDep, request: Request) -> str:
    """Who is asking, for the fair sharing of decode workers."""
    peer = request.client.host if request.client else None
    return engine.admission.client_of(request.headers, peer)


ClientDep = Annotated[str, Depends(client_key)]


async def require_admin(
    settings: SettingsDep,
    # Documented by the admin router's bearer security scheme, not as a parameter.
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    """Bearer-token check of the admin endpoints (which exist only when a token is set)."""
    token = settings.admin_token.get_secret_value() if settings.admin_token else ""
    scheme, _, given = (authorization or "").partition(" ")
    # Compared as bytes: compare_digest refuses non-ASCII str. Header values arrive decoded
    # as latin-1, so encoding them back gives the bytes sent; the token is sent as UTF-8.
    sent, expected = given.encode("latin-1", "replace"), token.encode()
    if not token or scheme.lower() != "bearer" or not secrets.compare_digest(sent, expected):
        raise Unauthorized(
            "the admin endpoints need 'Authorization: Bearer <ACTSERVE_ADMIN_TOKEN>'"
        )


AdminDep = Depends(require_admin)
