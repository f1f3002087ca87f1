"""Shared state and checks, injected into the routes."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from service.errors import Unauthorized
from service.loaded_models import LoadedModels
from service.metrics import ServiceMetrics
from service.settings import Settings
from service.video import DecodePool


@dataclass
class AppState:
    """Everything long-lived, created by the lifespan and closed by it."""

    settings: Settings
    metrics: ServiceMetrics
    models: LoadedModels
    decode_pool: DecodePool
    shutting_down: bool = False


def get_state(request: Request) -> AppState:
    return request.app.state.actserve


def get_settings(request: Request) -> Settings:
    return request.app.state.actserve.settings


StateDep = Annotated[AppState, Depends(get_state)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def require_admin(
    settings: SettingsDep, authorization: Annotated[str | None, Header()] = None
) -> None:
    """Bearer-token check of the admin endpoints (which exist only when a token is set)."""
    token = settings.admin_token.get_secret_value() if settings.admin_token else ""
    scheme, _, given = (authorization or "").partition(" ")
    if not token or scheme.lower() != "bearer" or not secrets.compare_digest(given, token):
        raise Unauthorized(
            "the admin endpoints need 'Authorization: Bearer <ACTSERVE_ADMIN_TOKEN>'"
        )


AdminDep = Depends(require_admin)
