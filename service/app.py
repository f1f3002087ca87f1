"""The FastAPI application: lifespan, routers, and the one place errors become responses."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model_store import ModelStore, StoreError
from service.admission import Admission
from service.deps import AppState
from service.errors import Overloaded, ServiceError, code_for, status_for
from service.loaded_models import LoadedModels
from service.metrics import ServiceMetrics
from service.oip import error_body
from service.routes import admin, classify, docs, embeddings, health, models, v2
from service.server import DrainGuard
from service.settings import Settings
from service.video import DecodePool

logger = logging.getLogger("actserve")

DESCRIPTION = """\
Recognise human actions in videos. `POST /classify` takes a video (multipart field `video`
or a raw video/* body) and returns the top-k actions of a model from the store, averaged over
the model's test views, with optional embedding, per-clip scores and a latency breakdown.
`POST /embed` returns the video's embedding (optionally per window), `POST /similarity`
compares two videos (multipart fields `a` and `b`). Errors are JSON `{error, message, ...}`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; `settings` default to the environment (ACTSERVE_*)."""
    settings = settings or Settings()
    app = FastAPI(
        title="actserve",
        version=_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        # Served by routes/docs.py from installed assets, so they work without internet.
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=lambda route: f"{route.tags[0]}-{route.name}",
    )
    app.state.settings = settings
    app.include_router(classify.router)
    app.include_router(embeddings.router)
    app.include_router(models.router)
    app.include_router(health.router)
    app.include_router(docs.router)
    app.include_router(v2.router)
    if settings.admin_token is not None:
        app.include_router(admin.router)
    app.add_exception_handler(ServiceError, handle_error)
    app.add_exception_handler(StoreError, handle_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(HTTPException, handle_http_exception)
    app.add_exception_handler(Exception, handle_unexpected)
    app.add_middleware(DrainGuard)  # inside RequestIds: its answers carry the request id
    app.add_middleware(RequestIds)
    return app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the decode workers and load the served models; drain and stop them on exit."""
    settings: Settings = app.state.settings
    if not settings.store.is_dir():
        raise RuntimeError(f"no model store at {settings.store} (ACTSERVE_STORE)")
    metrics = ServiceMetrics()
    pool = DecodePool(settings.decode, settings.video)
    models = LoadedModels(
        ModelStore(settings.store),
        metrics,
        runtime=settings.runtime,
        batching=settings.batching,
        drain_timeout_s=settings.drain_timeout_s,
        upstream=lambda: admission.upstream,  # the door below, read when batching
    )
    admission = Admission(settings.admission, pool, inference_backlog_s=models.inference_backlog_s)
    metrics.watch(pool, admission)
    state = AppState(
        settings=settings, metrics=metrics, models=models, decode_pool=pool, admission=admission
    )
    app.state.actserve = state
    await pool.start()
    try:
        await state.models.start(settings.default_model, settings.preload)
        logger.info(
            "serving %s from %s (default: %s)",
            ", ".join(m.key for m in state.models.loaded()) or "nothing",
            settings.store,
            state.models.default_model,
        )
        yield
    finally:
        admission.draining = True
        await state.models.close()
        await pool.close()


# ----------------------------------------------------------------------- errors -> responses


def error_response(
    request: Request, status: int, code: str, message: str, **extra: object
) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    state: AppState | None = getattr(request.app.state, "actserve", None)
    if state is not None and status >= 400:
        state.metrics.rejections.labels(code).inc()
    if request.url.path.startswith(v2.router.prefix):
        body = error_body(code, message, request_id=request_id, **extra)
    else:
        body = {"error": code, "message": message, "request_id": request_id, **extra}
    return JSONResponse(body, status_code=status)


async def handle_error(request: Request, error: Exception) -> JSONResponse:
    status = status_for(error)
    details = error.details() if isinstance(error, ServiceError) else {}
    response = error_response(request, status, code_for(error), str(error), **details)
    if isinstance(error, Overloaded):
        response.headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, ServiceError) and error.close_connection:
        response.headers["Connection"] = "close"
    if status >= 500:
        logger.error("%s %s -> %d: %s", request.method, request.url.path, status, error)
    return response


async def handle_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = [
        f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}"
        for e in error.errors()
    ]
    return error_response(request, 400, "bad_request", "; ".join(problems))


async def handle_http_exception(request: Request, error: HTTPException) -> JSONResponse:
    return error_response(request, error.status_code, code_for(error), str(error.detail))


async def handle_unexpected(request: Request, error: Exception) -> JSONResponse:
    logger.exception("%s %s failed", request.method, request.url.path)
    return error_response(request, 500, "internal_error", f"unexpected {type(error).__name__}")


class RequestIds:
    """Gives every request an id (the client's X-Request-ID when plain, else a new one),
    echoed in the response. A pure ASGI middleware: the request's messages pass through
    untouched, disconnects included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(Headers(scope=scope).get("x-request-id", ""))
        scope.setdefault("state", {})["request_id"] = request_id

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        await self.app(scope, receive, tagged)


def _request_id(given: str) -> str:
    """The client's request id when it is short and plain, else a new one."""
    if 0 < len(given) <= 64 and all(c.isalnum() or c in "-_." for c in given):
        return given
    return uuid.uuid4().hex[:16]


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("actserve")
    except metadata.PackageNotFoundError:
        return "0+unknown"
