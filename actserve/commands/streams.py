"""`actserve streams add|list|rm|watch`: live streams on a running service."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Column, Table

from actserve.console import DEFAULT_URL, UrlOption, console, service_client

if TYPE_CHECKING:
    pass

streams_app = typer.Typer(help="Live streams on a running service.", no_args_is_help=True)


@streams_app.command("add")
def add(
    source: Annotated[str, typer.Argument(help="rtsp://, rtmp://, srt://, http(s)://, udp://")],
    model: Annotated[str | None, typer.Option(help="Model (default: the server's).")] = None,
    version: Annotated[int | None, typer.Option(min=1, help="Pin a version.")] = None,
    alias: Annotated[str | None, typer.Option(help="Follow an alias.")] = None,
    window: Annotated[float | None, typer.Option(help="Seconds per window.")] = None,
    stride: Annotated[float, typer.Option(help="Seconds between windows.")] = 0.5,
    high: Annotated[float, typer.Option(help="An action starts at this probability…")] = 0.6,
    low: Annotated[float, typer.Option(help="…and ends below this one.")] = 0.4,
    windows: Annotated[int, typer.Option(help="Windows at or above --high to start.")] = 2,
    label: Annotated[list[str] | None, typer.Option(help="Only these labels (repeat).")] = None,
    webhook: Annotated[str | None, typer.Option(help="POST events here (signed).")] = None,
    name: Annotated[str | None, typer.Option(help="A name of your choosing.")] = None,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Start classifying a live stream; prints its id."""
    events = {"high": high, "low": low, "windows": windows, "labels": label or None}
    with service_client(url, timeout=30) as client:
        stream = client.add_stream(
            source,
            model=model,
            version=version,
            alias=alias,
            window_s=window,
            stride_s=stride,
            events=events,
            webhook_url=webhook,
            name=name,
        )
    console.print(stream.id, highlight=False)


@streams_app.command("list")
def list_streams(url: UrlOption = DEFAULT_URL) -> None:
    """Every stream with its state and statistics."""
    with service_client(url, timeout=30) as client:
        streams = client.list_streams()
    table = Table(
        Column("id", no_wrap=True),
        "name",
        "state",
        "model",
        "fps",
        "windows",
        "dropped windows / frames",
        "lag s",
        "url",
        "last error",
    )
    for s in streams:
        table.add_row(
            s.id,
            s.name or "-",
            s.state.value,
            s.serving or s.model,
            f"{s.stats.input_fps:g}",
            str(s.stats.windows),
            f"{s.stats.dropped_windows} / {s.stats.dropped_frames}",
            "-" if s.stats.lag_s is None else f"{s.stats.lag_s:.2f}",
            s.url,
            s.last_error or "-",
        )
    console.print(table)


@streams_app.command("rm")
def remove(
    stream_ids: Annotated[list[str], typer.Argument(help="Stream ids.")],
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Stop and forget streams."""
    with service_client(url, timeout=30) as client:
        for stream_id in stream_ids:
            client.remove_stream(stream_id)


@streams_app.command("watch")
def watch(
    stream_id: Annotated[str, typer.Argument(help="Stream id.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Print the stream's action events as they happen (Ctrl-C stops)."""
    with service_client(url, timeout=30) as client:
        for event in client.stream_events(stream_id):
            if as_json:
                print(event.model_dump_json(), flush=True)
                continue
            at = (
                event.end_time if event.type.value == "end" else event.start_time
            ) or event.emitted_at
            console.print(
                f"{at:%H:%M:%S.%f}"[:-3],
                f"{event.type.value:5}",
                f"{event.label}",
                f"score {event.score:.2f}",
                f"stream {event.start_stream_s:.1f}s"
                + (f"–{event.end_stream_s:.1f}s" if event.end_stream_s is not None else ""),
                highlight=False,
            )
