"""`actserve jobs submit|status|wait|results|cancel`: durable jobs on a running actserve,
through `actserve.client`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from actserve.console import DEFAULT_URL, UrlOption, console, service_client
from model_store.spec import Profile

FEATURES = "labels,segments,shots,windows,embeddings"

jobs_app = typer.Typer(
    help="Durable jobs: long videos classified in the background, surviving restarts.",
    no_args_is_help=True,
)

JobArgument = Annotated[str, typer.Argument(help="The job's id (from `actserve jobs submit`).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the server's JSON.")]


@jobs_app.command("submit")
def submit(
    video: Annotated[Path, typer.Argument(help="A video file.", exists=True, dir_okay=False)],
    url: UrlOption = DEFAULT_URL,
    model: Annotated[str | None, typer.Option(help="Model (default: the server's).")] = None,
    version: Annotated[int | None, typer.Option(min=1, help="A loaded version.")] = None,
    alias: Annotated[str | None, typer.Option(help="An alias, e.g. stable.")] = None,
    profile: Annotated[Profile | None, typer.Option(help="fast or accurate.")] = None,
    features: Annotated[
        str, typer.Option(help=f"Comma-separated, of {FEATURES}.")
    ] = "labels,segments",
    top_k: Annotated[int | None, typer.Option("--top-k", min=1, help="Classes per window.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait and print the results.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Submit a video as a job and print its id (with --wait, follow it to its results)."""
    with service_client(url) as client:
        job = client.submit_job(
            video,
            model=model,
            version=version,
            alias=alias,
            profile=profile,
            features=tuple(f.strip() for f in features.split(",") if f.strip()),
            top_k=top_k,
        )
        if not wait:
            if as_json:
                console.print_json(job.status.model_dump_json())
            else:
                console.print(job.id, highlight=False)
            return
        results = _follow(job)
    _print_results(results, as_json)


@jobs_app.command("status")
def status(job_id: JobArgument, url: UrlOption = DEFAULT_URL, as_json: JsonOption = False) -> None:
    """A job's state and progress."""
    with service_client(url) as client:
        found = client.job(job_id).status
    if as_json:
        console.print_json(found.model_dump_json())
        return
    progress = found.progress
    total = progress.windows_total if progress.windows_total is not None else "?"
    eta = f", about {progress.eta_s:.0f} s left" if progress.eta_s is not None else ""
    console.print(
        f"{found.id}: {found.state}, {progress.windows_done}/{total} windows "
        f"({progress.fraction:.0%}){eta}",
        highlight=False,
    )
    if found.error is not None:
        console.print(f"[red]{found.error.error}[/] ({found.error.status}): {found.error.message}")


@jobs_app.command("wait")
def wait(
    job_id: JobArgument,
    url: UrlOption = DEFAULT_URL,
    timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Follow a job with a progress bar until it finishes; print its results."""
    with service_client(url) as client:
        results = _follow(client.job(job_id), timeout=timeout)
    _print_results(results, as_json)


@jobs_app.command("results")
def results(job_id: JobArgument, url: UrlOption = DEFAULT_URL, as_json: JsonOption = False) -> None:
    """A succeeded job's results (every window)."""
    with service_client(url) as client:
        answer = client.job(job_id).results()
    _print_results(answer, as_json)


@jobs_app.command("cancel")
def cancel(job_id: JobArgument, url: UrlOption = DEFAULT_URL) -> None:
    """Cancel a queued or running job."""
    with service_client(url) as client:
        found = client.job(job_id).cancel()
    console.print(f"{found.id}: {found.state}", highlight=False)


def _follow(job, timeout: float | None = None):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[eta]}"),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(f"job {job.id}", total=None, eta="")

        def show(found) -> None:
            p = found.progress
            eta = f"~{p.eta_s:.0f} s left" if p.eta_s is not None else found.state
            bar.update(task, total=p.windows_total, completed=p.windows_done, eta=eta)

        return job.wait(timeout=timeout, progress=show)


def _print_results(answer, as_json: bool) -> None:
    if as_json:
        console.print_json(answer.model_dump_json())
        return
    v = answer.video
    console.print(
        f"job {answer.job_id}: {answer.model} v{answer.version}, {answer.profile} profile, "
        f"{v.clips} windows of a {v.duration_s or 0:.1f} s {v.codec} video",
        highlight=False,
    )
    if answer.top_k:
        table = Table("#", "action", "score", title="whole video")
        for rank, entry in enumerate(answer.top_k, 1):
            table.add_row(str(rank), entry.label, f"{entry.score:.3f}")
        console.print(table)
    if answer.segments is not None:
        table = Table("#", "seconds", "action", "score", "windows", title="segments")
        for number, s in enumerate(answer.segments, 1):
            span = f"{s.start_s:.2f}–{s.end_s:.2f}"
            table.add_row(str(number), span, s.label, f"{s.score:.3f}", str(s.windows))
        console.print(table)
    if answer.clips:
        console.print(f"{len(answer.clips)} windows scored (--json prints them)")
    if answer.embedding is not None:
        console.print(f"embedding: {answer.embedding.dim} values")
