"""Terminal output shared by the commands: rich consoles, step lines and failures."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error the way every command does; `raise fail(...)` exits with `code`."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


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
