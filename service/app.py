"""The FastAPI application: lifespan, routers, and the one place errors become responses."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from model_store import StoreError
from service import tracing
from service.auth import ApiKeyDep, parse_keys
from service.engine import Engine
from service.errors import Overloaded, ServiceError, code_for, error_body, status_for
from service.jobs import routes as jobs_routes
from service.jobs.service import Jobs
from service.jobs.serving import Serving
from service.logs import RequestLog, record_of
from service.routes import (
    admin,
    classify,
    docs,
    embeddings,
    health,
    models,
    search,
    v2,
    v2_extensions,
)
from service.server import DrainGuard, RequestIds
from service.settings import Settings
from service.streams import routes as streams
from service.streams.serving import streams_running
from window_index import WindowIndexError

logger = logging.getLogger("actserve")

DESCRIPTION = """\
Recognise human actions in videos. `POST /classify` takes a video (multipart field `video`
or a raw video/* body) and returns the top-k actions of a model from the store, averaged over
the model's test views, with optional embedding, per-clip scores and a latency breakdown.
`POST /embed` returns the video's embedding (optionally per window), `POST /similarity`
compares two videos (multipart fields `a` and `b`). `POST /index` keeps a video's window
embeddings; `POST /search` finds moments like a clip or a stored window, or of a probe's classes.
Errors are JSON `{error, message, ...}`.
"""


#: What a browser page may send (preflights allow these) besides the CORS-safe headers.
CORS_REQUEST_HEADERS = ["Authorization", "X-API-Key", "X-Request-ID", "Content-Type"]
CORS_REQUEST_HEADERS += ["traceparent", "tracestate"]


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
    app.state.api_keys = parse_keys(settings.api_keys, settings.api_keys_file)
    app.include_router(classify.router, dependencies=[ApiKeyDep])
    app.include_router(embeddings.router, dependencies=[ApiKeyDep])
    app.include_router(search.router, dependencies=[ApiKeyDep])
    app.include_router(models.router)
    app.include_router(health.router)
    app.include_router(docs.router)
    app.include_router(v2_extensions.router)  # first: /v2/models/stats is not a model name
    app.include_router(v2.router)
    app.include_router(streams.router)
    app.include_router(jobs_routes.router)
    if settings.admin_token is not None:
        app.include_router(admin.router)
    app.add_exception_handler(ServiceError, handle_error)
    app.add_exception_handler(StoreError, handle_error)
    app.add_exception_handler(WindowIndexError, handle_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(HTTPException, handle_http_exception)
    app.add_exception_handler(Exception, handle_unexpected)
    app.add_middleware(DrainGuard)  # inside RequestIds: its answers carry the request id
    if tracing.available():
        app.add_middleware(tracing.Tracing)  # inside RequestLog: it reads the request's record
    app.add_middleware(RequestLog)  # inside RequestIds: it logs the id that one chose
    app.add_middleware(RequestIds)
    if settings.cors_origins:  # outermost: preflights are answered before anything else
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "HEAD", "OPTIONS"],
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=["X-Request-ID", "Retry-After", "traceparent"],
            max_age=600,
        )
    return app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the engine (decode workers, the served models); drain and close it on exit."""
    settings: Settings = app.state.settings
    tracing.configure_tracing(settings.trace_exporter)
    app.state.engine = engine = Engine(settings)
    await engine.start()
    grpc_server = None
    try:
        if settings.grpc_port is not None:
            from service.grpc_server import start_grpc

            grpc_server = await start_grpc(
                engine, app.state.api_keys, app.version, settings.host, settings.grpc_port
            )
            app.state.grpc_port = grpc_server.actserve_port
        logger.info(
            "serving %s from %s (default: %s)",
            ", ".join(m.key for m in engine.models.loaded()) or "nothing",
            settings.store,
            engine.models.default_model,
        )
        app.state.jobs = await Jobs.open_for_server(settings.jobs, Serving.of_engine(engine))
        if isinstance(app.state.jobs, Jobs):
            await app.state.jobs.start(run=settings.jobs.run)
        async with streams_running(app):
            yield
    finally:
        if grpc_server is not None:
            engine.drain()
            await grpc_server.stop(grace=settings.drain_timeout_s)
        if isinstance(jobs := getattr(app.state, "jobs", None), Jobs):
            app.state.jobs = None
            await jobs.close()  # running jobs go back to the queue, their chunks kept
        await engine.close()


# ----------------------------------------------------------------------- errors -> responses


def error_response(
    request: Request, status: int, code: str, message: str, **extra: object
) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    engine: Engine | None = getattr(request.app.state, "engine", None)
    if engine is not None and status >= 400:
        engine.metrics.rejections.labels(code).inc()
    if (record := record_of(request)) is not None:
        record.error = code
    oip = request.url.path.startswith(v2.router.prefix)
    body = error_body(code, message, request_id=request_id, oip=oip, **extra)
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


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("actserve")
    except metadata.PackageNotFoundError:
        return "0+unknown"
