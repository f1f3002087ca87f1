"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from service.deps import EngineDep
from service.schemas import ReadyPublic

router = APIRouter(tags=["health"])


@router.get("/healthz")
def check_health() -> dict[str, str]:
    """The process is alive and its event loop answers."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=ReadyPublic,
    responses={503: {"model": ReadyPublic, "description": "Not ready (yet, or draining)."}},
)
def check_ready(engine: EngineDep) -> JSONResponse:
    """Ready when the default model is loaded and warmed up and the server is not draining."""
    ready = engine.ready
    body = ReadyPublic(
        ready=ready,
        default_model=engine.models.default_model,
        loaded=[m.key for m in engine.models.loaded()],
    )
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response)
def read_metrics(engine: EngineDep) -> Response:
    """Prometheus text exposition (all metrics are prefixed actserve_)."""
    return Response(engine.metrics.render(), media_type=CONTENT_TYPE_LATEST)
