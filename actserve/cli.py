"""The `actserve` command line: one entry point over the four packages.

Each command imports the heavy packages (torch, backbones) when it runs, so `actserve --help`
stays fast and the serving commands never load the backbone code.
"""

from __future__ import annotations

import typer

from actserve.commands import (
    batch,
    classify,
    demo,
    export,
    export_hf,
    import_artifact,
    jobs,
    models,
    probe,
    search,
    serve,
    streams,
    worker,
    zoo,
)

app = typer.Typer(
    name="actserve",
    help="Video action recognition: backbones, exporters, a model store and an HTTP service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("zoo")(zoo.list_zoo)
app.add_typer(zoo.checkpoint_app, name="checkpoint")
app.command("export")(export.export)
app.command("export-triton")(export.export_triton)
app.command("import-artifact")(import_artifact.import_artifact)
app.command("export-hf")(export_hf.export_hf)
app.add_typer(models.models_app, name="models")
app.command("serve")(serve.serve)
app.command("classify")(classify.classify)
app.command("demo-video")(demo.demo_video)
app.command("train-demo")(demo.train_demo)
app.command("probe")(probe.probe)
app.command("batch")(batch.batch)
app.command("search")(search.search)
app.add_typer(streams.streams_app, name="streams")
app.command("worker")(worker.worker)
app.add_typer(jobs.jobs_app, name="jobs")


def main() -> None:
    app()
