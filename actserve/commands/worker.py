"""`actserve worker`: run durable jobs from the shared jobs database, without HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from actserve.console import fail


def worker(
    store: Annotated[
        Path | None, typer.Option(help="Model store (default: the bundled demo store).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Default model.")] = None,
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Any service setting as KEY=VALUE (e.g. jobs_database_url=postgresql://...); "
            "the same as ACTSERVE_KEY=VALUE.",
        ),
    ] = None,
    once: Annotated[
        bool, typer.Option(help="Run the queued jobs, then exit (instead of waiting for more).")
    ] = False,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve the worker's Prometheus metrics on this port.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Run queued jobs (POST /jobs) from ACTSERVE_JOBS_DATABASE_URL, sharing the queue with
    the API replicas and other workers."""
    import logging

    from pydantic import ValidationError

    from actserve.commands.serve import parse_overrides
    from service.jobs.worker import run_worker
    from service.settings import Settings

    overrides = parse_overrides(setting)
    explicit = {"store": store, "default_model": model}
    overrides.update({k: v for k, v in explicit.items() if v is not None})
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise fail(f"invalid settings: {exc}", code=2) from None
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    ran = asyncio.run(run_worker(settings, once=once, metrics_port=metrics_port))
    if once:
        typer.echo(f"{ran} jobs run")
