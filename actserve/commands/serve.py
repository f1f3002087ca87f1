"""`actserve serve`: the HTTP service on uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from actserve.commands.export import ReadStoreOption, existing_store
from actserve.console import fail


def serve(
    store: ReadStoreOption,
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    model: Annotated[str | None, typer.Option(help="Default model.")] = None,
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Any service setting as KEY=VALUE, KEY its name without the prefix (e.g. "
            "max_batch_views=16): the same as ACTSERVE_KEY=VALUE.",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn and actserve log level.")] = "info",
) -> None:
    """Serve POST /classify, GET /models, health and metrics (settings: ACTSERVE_* variables)."""
    from pydantic import ValidationError

    from service.app import create_app
    from service.logs import configure_logging
    from service.server import Server, server_config
    from service.settings import Settings

    overrides = parse_overrides(setting)
    explicit = {"store": existing_store(store), "host": host, "port": port, "default_model": model}
    overrides.update({k: v for k, v in explicit.items() if v is not None})
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise fail(f"invalid settings: {exc}", code=2) from None
    try:
        app = create_app(settings)
    except ValueError as exc:
        raise fail(f"invalid settings: {exc}", code=2) from None
    config = server_config(
        app,
        settings.http,
        host=settings.host,
        port=settings.port,
        drain_timeout_s=settings.drain_timeout_s,
        log_level=log_level,
    )
    # After uvicorn's own set-up: its lines take the service's format, and the service writes
    # the one line per request (service/logs.py), so uvicorn's access log is off.
    configure_logging(settings.log_format, log_level)
    config.access_log = False
    server = Server(config, settings.http)
    server.run()
    if not server.started:
        raise typer.Exit(3)  # uvicorn's start-up failure code; the log says why


def parse_overrides(setting: list[str] | None) -> dict[str, object]:
    """`--set KEY=VALUE` options as settings keyword arguments (their flat names)."""
    from service.settings import Settings

    names = Settings.flat_names()
    overrides: dict[str, object] = {}
    for item in setting or []:
        key, sep, value = item.partition("=")
        key = key.strip().lower().removeprefix("actserve_")
        if not sep or key not in names:
            raise fail(
                f"--set takes KEY=VALUE with KEY one of {', '.join(sorted(names))}; got {item!r}",
                code=2,
            )
        overrides[key] = value
    return overrides
