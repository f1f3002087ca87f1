"""`actserve classify`: a video to a running actserve, through `actserve.client`, and its
answer as tables (or the server's JSON)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from actserve.console import console, fail
from model_store.spec import Profile

if TYPE_CHECKING:
    from service.schemas import ClassifyResponse

DEFAULT_URL = "http://127.0.0.1:8000"


def classify(
    videos: Annotated[
        list[str],
        typer.Argument(
            help="Video files, or '-' for one video on standard input.", metavar="VIDEO..."
        ),
    ],
    url: Annotated[str, typer.Option(envvar="ACTSERVE_URL", help="The service.")] = DEFAULT_URL,
    model: Annotated[str | None, typer.Option(help="Model (default: the server's).")] = None,
    version: Annotated[
        int | None, typer.Option(min=1, help="A loaded version of the model.")
    ] = None,
    alias: Annotated[str | None, typer.Option(help="An alias of the model, e.g. stable.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Classes to show.")] = 5,
    profile: Annotated[
        Profile | None,
        typer.Option(help="fast: one view; accurate: the model's reference test protocol."),
    ] = None,
    embedding: Annotated[
        bool, typer.Option("--embedding", help="Also ask for the mean embedding.")
    ] = False,
    per_clip: Annotated[
        bool, typer.Option("--per-clip", help="Scores of back-to-back clips over the video.")
    ] = False,
    segments: Annotated[
        bool,
        typer.Option(
            "--segments", help="Merge windows that agree on their top action into time segments."
        ),
    ] = False,
    segment_score: Annotated[
        float | None,
        typer.Option(
            "--segment-score",
            min=0.0,
            max=1.0,
            help="With --segments: the probability a window needs to belong to a segment.",
        ),
    ] = None,
    shots: Annotated[
        bool, typer.Option("--shots", help="Find the camera cuts and label each shot.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the server's JSON.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 120.0,
) -> None:
    """Send videos to a running actserve and print each one's top-k actions; exits 1 when
    any of them failed (each failure is one line, the others are still classified)."""
    from actserve.client import APIError, Client, Timeout, TransportError

    missing = [v for v in videos if v != "-" and not Path(v).is_file()]
    if missing:
        raise fail(f"no such video file: {', '.join(missing)}")
    if videos.count("-") > 1:
        raise fail("'-' (standard input) can be given once")
    parameters = dict(
        model=model,
        version=version,
        alias=alias,
        top_k=top_k,
        profile=profile,
        embedding=embedding,
        per_clip=per_clip,
        segments=segments,
        segment_score=segment_score,
        shots=shots,
    )
    answers, failed = [], 0
    with Client(url, timeout=timeout) as client:
        for video in videos:
            name = "stdin" if video == "-" else Path(video).name
            source = sys.stdin.buffer.read() if video == "-" else Path(video)
            try:
                answers.append((name, client.classify(source, **parameters)))
            except APIError as exc:
                failed += 1
                fail(f"{name}: {exc}")  # printed; the other videos go on
            except Timeout:
                raise fail(f"{url} did not answer within {timeout:g} s (--timeout)") from None
            except TransportError:
                raise fail(
                    f"no actserve answers at {url}; start one with `actserve serve`"
                ) from None
    if as_json:
        dumped = [result.model_dump_json() for _, result in answers]
        console.print_json(dumped[0] if len(videos) == 1 and dumped else f"[{','.join(dumped)}]")
    else:
        for name, result in answers:
            _print_answer(name, result)
    if failed:
        raise typer.Exit(1)


def _print_answer(name: str, result: ClassifyResponse) -> None:
    title = f"{name}: {result.model} v{result.version}, {result.profile} profile"
    table = Table("#", "action", "score", title=title)
    for rank, entry in enumerate(result.top_k, 1):
        table.add_row(str(rank), entry.label, f"{entry.score:.3f}")
    console.print(table)
    if result.clips:
        clips = Table("clip", "seconds", "top action", "score", title="per clip")
        for clip in result.clips:
            best = clip.top_k[0]
            span = f"{clip.start_s:.2f}–{clip.end_s:.2f}"
            clips.add_row(str(clip.clip), span, best.label, f"{best.score:.3f}")
        console.print(clips)
    if result.segments is not None:
        stretches = Table("#", "seconds", "action", "score", "windows", title="segments")
        for number, segment in enumerate(result.segments, 1):
            span = f"{segment.start_s:.2f}–{segment.end_s:.2f}"
            score = f"{segment.score:.3f}"
            stretches.add_row(str(number), span, segment.label, score, str(segment.windows))
        console.print(stretches)
    if result.shots is not None:
        table = Table("shot", "seconds", "cut", "top action", "score", title="shots")
        for shot in result.shots:
            span = f"{shot.start_s:.2f}–{shot.end_s:.2f}"
            cut = "" if shot.confidence is None else f"{shot.kind} {shot.confidence:.2f}"
            best = shot.top_k[0]
            table.add_row(str(shot.shot), span, cut, best.label, f"{best.score:.3f}")
        console.print(table)
    if result.embedding is not None:
        values = ", ".join(f"{v:.3f}" for v in result.embedding.values[:4])
        console.print(f"embedding: {result.embedding.dim} values ({values}, …)")
    t, v = result.timings, result.video
    views = f"{v.views} view{'s' if v.views != 1 else ''}"
    console.print(
        f"{views} of a {v.duration_s or 0:.1f} s {v.codec} video; "
        f"decode {t.decode_ms:.0f} ms, queue {t.queue_ms:.0f} ms, "
        f"inference {t.inference_ms:.0f} ms, total {t.total_ms:.0f} ms"
    )
    for stream, share in (t.streams or {}).items():
        flow = f", TV-L1 flow {share.flow_ms:.0f} ms of the decode" if share.flow_ms else ""
        console.print(
            f"  {stream} stream: queue {share.queue_ms:.0f} ms, "
            f"inference {share.inference_ms:.0f} ms{flow}"
        )
    for warning in v.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
