"""Terminal output shared by the commands: rich consoles, step lines and failures."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

if TYPE_CHECKING:
    from actserve.client import Client

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error the way every command does; `raise fail(...)` exits with `code`."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


#: The service a command calls (`actserve jobs`, `actserve streams`).
DEFAULT_URL = "http://127.0.0.1:8000"
UrlOption = Annotated[str, typer.Option("--url", envvar="ACTSERVE_URL", help="The service.")]


@contextmanager
def service_client(url: str, timeout: float | None = None) -> Iterator[Client]:
    """A client of the service at `url` for one command: its errors become one line and
    exit 1 (`timeout` None: the client's default)."""
    from actserve.client import APIError, Client, JobFailed, Timeout, TransportError

    try:
        with Client(url, **({} if timeout is None else {"timeout": timeout})) as client:
            yield client
    except (APIError, JobFailed, Timeout) as exc:
        raise fail(str(exc)) from None
    except TransportError:
        raise fail(f"no actserve answers at {url}; start one with `actserve serve`") from None


@contextmanager
def rich_step(title: str) -> Iterator[None]:
    """A long step: a spinner on a terminal, a start line elsewhere, then a done line with
    the time taken, so a user sees a minutes-long export working."""
    started = time.perf_counter()
    if not console.is_terminal:
        console.print(f"… {title}", highlight=False)
    with console.status(f"{title} …"):
        yield
    console.print(f"[green]✓[/] {title} [dim]({time.perf_counter() - started:.1f} s)[/]")


class VideoProgress:
    """A progress bar over videos, with done/total, videos/s, failures, elapsed time and ETA,
    for commands that run many videos (`actserve probe`, `actserve batch`)."""

    def __init__(self, description: str, total: int, *, completed: int = 0) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
        )
        self.task = self.progress.add_task(description, total=total, completed=completed, rate="")
        self.started = time.perf_counter()
        self.done = 0
        self.failed = 0

    def __enter__(self) -> VideoProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def advance(self, *, failed: bool = False) -> None:
        self.done += 1
        self.failed += failed
        rate = self.done / max(time.perf_counter() - self.started, 1e-9)
        failures = f", {self.failed} failed" if self.failed else ""
        self.progress.update(self.task, advance=1, rate=f"{rate:.2f} videos/s{failures}")
