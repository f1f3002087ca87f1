"""`actserve demo-video` and `actserve train-demo`: the demo model's clips and training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from actserve.console import console, fail

#: The frame sizes `demo-video` writes: even (4:2:0 chroma) and small enough to render in
#: memory (a 2 s clip of 1920×1080 is 370 MB of frames).
MIN_SIDE, MAX_SIDE = 16, 1920


def demo_video(
    action: Annotated[
        str,
        typer.Argument(
            help="One of the demo model's actions, or a new one for `actserve probe` (quote it)."
        ),
    ],
    out: Annotated[Path, typer.Argument(help="Output: .mp4 (H.264), .webm (VP9) or .avi.")],
    seed: Annotated[int, typer.Option(help="Random scene seed.")] = 0,
    width: Annotated[int, typer.Option(help="Frame width.")] = 320,
    height: Annotated[int, typer.Option(help="Frame height.")] = 240,
) -> None:
    """Write a synthetic clip of one of the demo model's actions, to try the service with (or
    of a motion it never saw, to teach it with `actserve probe`)."""
    from actserve.demo.synthetic import ACTIONS, NEW_ACTIONS, render_video, write_video

    if action not in ACTIONS + NEW_ACTIONS:
        known, new = ", ".join(ACTIONS), ", ".join(NEW_ACTIONS)
        raise fail(
            f"unknown action {action!r}; choose one of: {known} (the demo model's) or {new} "
            "(new motions, for `actserve probe`)",
            code=2,
        )
    for side, value in (("--width", width), ("--height", height)):
        if not MIN_SIDE <= value <= MAX_SIDE or value % 2:
            raise fail(
                f"{side} {value}: give an even number of pixels from {MIN_SIDE} to {MAX_SIDE} "
                "(H.264 and VP9 store colour at half resolution)",
                code=1,
            )
    try:
        write_video(render_video(action, seed=seed, height=height, width=width), str(out))
    except ValueError as exc:
        raise fail(str(exc), code=2) from None
    console.print(f"wrote {out} ({action}, seed {seed}, {width}×{height})")


#: Held-out clip accuracy below which `train-demo` does not publish unless forced: the shipped
#: model reaches 99.3%, chance is 10%.
MIN_ACCURACY = 0.9


def train_demo(
    store: Annotated[Path, typer.Option(help="Store to publish the trained model into.")],
    steps: Annotated[int, typer.Option(help="Training steps of 32 clips (at least 10).")] = 1200,
    seed: Annotated[int, typer.Option(help="Random seed (the run is deterministic).")] = 0,
    min_accuracy: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Held-out clip accuracy (0-1) needed to publish."),
    ] = MIN_ACCURACY,
    force: Annotated[bool, typer.Option("--force", help="Publish below --min-accuracy.")] = False,
) -> None:
    """Train the demo model on synthetic actions (CPU, minutes) and publish it, if it reaches
    --min-accuracy on held-out clips."""
    from actserve.demo.train import AccuracyTooLowError, TrainingConfig, main

    if store.exists() and not store.is_dir():
        raise fail(f"--store {store} is a file, not a model store directory", code=2)
    try:
        config = TrainingConfig(steps=steps, seed=seed)
    except ValueError as exc:
        raise fail(f"{exc}", code=2) from None
    try:
        main(store, config, min_accuracy=min_accuracy, force=force)
    except AccuracyTooLowError as exc:
        raise fail(str(exc)) from None
