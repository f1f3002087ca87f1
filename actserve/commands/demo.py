"""`actserve classify`, `actserve demo-video` and `actserve train-demo`: trying the service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from actserve.console import console, fail

DEFAULT_URL = "http://127.0.0.1:8000"


def classify(
    video: Annotated[Path, typer.Argument(help="A video file.", exists=True, dir_okay=False)],
    url: Annotated[str, typer.Option(envvar="ACTSERVE_URL", help="The service.")] = DEFAULT_URL,
    top_k: Annotated[int, typer.Option("--top-k", help="Classes to show.")] = 5,
    model: Annotated[str | None, typer.Option(help="Model (default: the server's).")] = None,
    profile: Annotated[str | None, typer.Option(help="fast or accurate.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the server's JSON.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 120.0,
) -> None:
    """Send a video to a running actserve and print its top-k actions."""
    import httpx

    params: dict[str, object] = {"top_k": top_k}
    params.update({k: v for k, v in {"model": model, "profile": profile}.items() if v})
    try:
        with video.open("rb") as f:
            response = httpx.post(
                f"{url.rstrip('/')}/classify",
                params=params,
                files={"video": (video.name, f, "application/octet-stream")},
                timeout=timeout,
            )
    except httpx.ConnectError:
        raise fail(f"no actserve answers at {url}; start one with `actserve serve`") from None
    except httpx.HTTPError as exc:
        raise fail(f"{url}: {exc}") from None
    try:
        body = response.json()
    except ValueError:
        raise fail(f"{url} answered {response.status_code} without JSON") from None
    if response.status_code != 200:
        raise fail(f"{response.status_code} {body.get('error')}: {body.get('message')}")
    if as_json:
        console.print_json(json.dumps(body))
        return
    table = Table("#", "action", "score", title=f"{video.name}: {body['model']} v{body['version']}")
    for rank, entry in enumerate(body["top_k"], 1):
        table.add_row(str(rank), entry["label"], f"{entry['score']:.3f}")
    console.print(table)
    t, v = body["timings"], body["video"]
    console.print(
        f"{v['views']} views of a {v['duration_s'] or 0:.1f} s {v['codec']} video; "
        f"decode {t['decode_ms']:.0f} ms, queue {t['queue_ms']:.0f} ms, "
        f"inference {t['inference_ms']:.0f} ms, total {t['total_ms']:.0f} ms"
    )
    for stream, share in (t.get("streams") or {}).items():
        flow = f", TV-L1 flow {share['flow_ms']:.0f} ms of the decode" if share["flow_ms"] else ""
        console.print(
            f"  {stream} stream: queue {share['queue_ms']:.0f} ms, "
            f"inference {share['inference_ms']:.0f} ms{flow}"
        )
    for warning in v.get("warnings", []):
        console.print(f"[yellow]warning:[/] {warning}")


def demo_video(
    action: Annotated[str, typer.Argument(help="One of the demo model's actions (quote it).")],
    out: Annotated[Path, typer.Argument(help="Output: .mp4 (H.264), .webm (VP9) or .avi.")],
    seed: Annotated[int, typer.Option(help="Random scene seed.")] = 0,
    width: Annotated[int, typer.Option(help="Frame width.")] = 320,
    height: Annotated[int, typer.Option(help="Frame height.")] = 240,
) -> None:
    """Write a synthetic clip of one of the demo model's actions, to try the service with."""
    from actserve.demo.synthetic import ACTIONS, render_video, write_video

    if action not in ACTIONS:
        raise fail(f"unknown action {action!r}; choose one of: {', '.join(ACTIONS)}", code=2)
    try:
        write_video(render_video(action, seed=seed, height=height, width=width), str(out))
    except ValueError as exc:
        raise fail(str(exc), code=2) from None
    console.print(f"wrote {out} ({action}, seed {seed}, {width}×{height})")


def train_demo(
    store: Annotated[Path, typer.Option(help="Store to publish the trained model into.")],
    steps: Annotated[int, typer.Option(help="Training steps of 32 clips.")] = 1200,
    seed: Annotated[int, typer.Option(help="Random seed (the run is deterministic).")] = 0,
) -> None:
    """Train the demo model on synthetic actions (CPU, minutes) and publish it."""
    from actserve.demo.train import TrainingConfig, main

    main(store, TrainingConfig(steps=steps, seed=seed))
