"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from service.deps import EngineDep
from service.schemas import ReadyPublic

router = APIRouter(tags=["health"])


@router.get("/healthz")
def check_health() -> dict[str, str]:
    """The process is alive and its event loop answers."""
    return {"status": "ok"}


# HEAD, as load balancers and uptime checkers send it: the GET's status and headers, no body
# (uvicorn drops it). Kept out of the OpenAPI document, where it would repeat the GET.
@router.head("/healthz", include_in_schema=False)
def check_health_head() -> Response:
    return Response(status_code=200)


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
        broken=engine.models.snapshot().broken(),
    )
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.head("/readyz", include_in_schema=False)
def check_ready_head(engine: EngineDep) -> Response:
    return Response(status_code=200 if engine.ready else 503)


@router.get("/metrics", response_class=Response)
def read_metrics(engine: EngineDep, request: Request) -> Response:
    """Prometheus text exposition, or OpenMetrics when the scraper's Accept header asks for
    it (`application/openmetrics-text`). The service's metrics are prefixed actserve_; the
    process's (memory, CPU, file descriptors) process_, the interpreter's python_."""
    body, content_type = engine.metrics.exposition(request.headers.get("accept"))
    return Response(body, media_type=content_type)


@router.head("/metrics", include_in_schema=False)
def read_metrics_head(engine: EngineDep, request: Request) -> Response:
    return read_metrics(engine, request)
