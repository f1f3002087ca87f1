"""Shared state and checks, injected into the routes."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from model_store import ModelStore
from service.admission import Admission
from service.errors import Unauthorized, status_for
from service.loaded_models import LoadedModel, LoadedModels
from service.metrics import NO_MODEL, ServiceMetrics
from service.settings import Settings
from service.video import DecodePool


@dataclass
class AppState:
    """Everything long-lived, created by the lifespan and closed by it."""

    settings: Settings
    metrics: ServiceMetrics
    models: LoadedModels
    decode_pool: DecodePool
    admission: Admission


def get_state(request: Request) -> AppState:
    return request.app.state.actserve


def get_settings(request: Request) -> Settings:
    return request.app.state.actserve.settings


def get_store(request: Request) -> ModelStore:
    return request.app.state.actserve.models.store


StateDep = Annotated[AppState, Depends(get_state)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[ModelStore, Depends(get_store)]


class RequestOutcome:
    """Which model version a request went to, for `actserve_requests_total`."""

    def __init__(self) -> None:
        self.labels = NO_MODEL

    def served_by(self, loaded: LoadedModel) -> LoadedModel:
        self.labels = loaded.labels
        return loaded


def count_request(state: StateDep, request: Request) -> Iterator[RequestOutcome]:
    """Count the request under its endpoint, model version and final status, whatever the
    outcome: validation errors and the route's own errors pass through here on their way out."""
    outcome = RequestOutcome()
    endpoint = request.scope["route"].path
    state.metrics.requests_in_flight.inc()
    try:
        yield outcome
    except BaseException as error:
        state.metrics.count_request(endpoint, outcome.labels, status_for(error))
        raise
    else:
        state.metrics.count_request(endpoint, outcome.labels, 200)
    finally:
        state.metrics.requests_in_flight.dec()


OutcomeDep = Annotated[RequestOutcome, Depends(count_request)]


def require_admin(
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
