"""`actserve serve`: the HTTP service on uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from actserve.console import fail


def serve(
    store: Annotated[
        Path | None, typer.Option(help="Model store (default: the bundled demo store).")
    ] = None,
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
    import logging

    from pydantic import ValidationError

    from service.app import create_app
    from service.server import Server, server_config
    from service.settings import Settings

    overrides = parse_overrides(setting)
    explicit = {"store": store, "host": host, "port": port, "default_model": model}
    overrides.update({k: v for k, v in explicit.items() if v is not None})
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise fail(f"invalid settings: {exc}", code=2) from None
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    app = create_app(settings)
    config = server_config(
        app,
        settings.http,
        host=settings.host,
        port=settings.port,
        drain_timeout_s=settings.drain_timeout_s,
        log_level=log_level,
    )
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
