"""`actserve export` and `actserve export-triton`: from a backbone to a store version, and from
a store version to a Triton repository."""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from actserve.console import console, err_console, fail, rich_step
from model_store.labels import list_label_sets
from model_store.spec import ModelSpec, Profile


class Format(StrEnum):
    onnx = "onnx"
    torchscript = "torchscript"
    both = "both"


class PrecisionChoice(StrEnum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


StoreOption = Annotated[
    Path, typer.Option("--store", envvar="ACTSERVE_STORE", help="Model store directory.")
]


def bundled_store() -> Path:
    """The demo store inside the installed service package (found without importing it)."""
    from importlib.util import find_spec

    spec = find_spec("service")
    assert spec is not None and spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0]) / "bundled_store"


#: The store a command reads from: --store, else ACTSERVE_STORE, else the bundled demo store;
#: the same in every command that only reads (`serve`, `batch`, `models list|show`, `probe
#: --base`). Commands that write to a store take `StoreOption`, which has no default.
ReadStoreOption = Annotated[
    Path,
    typer.Option(
        "--store",
        envvar="ACTSERVE_STORE",
        default_factory=bundled_store,
        show_default="the bundled demo store",
        help="Model store directory (default: ACTSERVE_STORE, else the bundled demo store).",
    ),
]


def existing_store(path: Path) -> Path:
    """`path`, or a one-line error and exit 1 when it is not a directory."""
    if not path.is_dir():
        raise fail(
            f"no model store at {path}"
            + (" (it is a file)" if path.exists() else " (no such directory)")
        )
    return path


def export(
    model: Annotated[str, typer.Argument(help="Registered backbone, e.g. r3d_50 (actserve zoo).")],
    store: StoreOption,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Public checkpoint file; without it: random weights.")
    ] = None,
    num_classes: Annotated[
        int | None, typer.Option(help="Classes (checked against a checkpoint).")
    ] = None,
    labels: Annotated[
        str | None, typer.Option(help="A bundled label set name or a file with one label per line.")
    ] = None,
    format: Annotated[Format, typer.Option("--format", help="Artifact format(s).")] = Format.onnx,
    name: Annotated[
        str | None, typer.Option(help="Store name (default: the backbone name).")
    ] = None,
    alias: Annotated[str | None, typer.Option(help="Point this alias at the new version.")] = None,
    fp16: Annotated[
        bool, typer.Option("--fp16", help="Also write an fp16 ONNX artifact for CUDA.")
    ] = False,
    precision: Annotated[
        PrecisionChoice,
        typer.Option(
            help="Serving precision: fp32; bf16 (OpenVINO, on a CPU with AVX512-BF16 or AMX); "
            "fp16 (the fp16 artifact on GPUs, as --fp16). Below fp32 its agreement with fp32 "
            "is measured and recorded, and the export stops below the bar.",
        ),
    ] = PrecisionChoice.fp32,
    force: Annotated[
        bool, typer.Option("--force", help="Publish a precision below the agreement bar.")
    ] = False,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 18,
    description: Annotated[str, typer.Option(help="Free text kept in the manifest.")] = "",
    default_profile: Annotated[
        Profile, typer.Option(help="The service's profile when a request names none.")
    ] = Profile.ACCURATE,
    two_stream: Annotated[
        bool,
        typer.Option(
            "--two-stream",
            help="Publish an RGB and an optical-flow stream of MODEL as one fused version.",
        ),
    ] = False,
    flow_checkpoint: Annotated[
        Path | None,
        typer.Option(help="The flow stream's public checkpoint (implies --two-stream)."),
    ] = None,
    fusion_weights: Annotated[
        str, typer.Option(help="RGB,FLOW weights of the two streams' softmax average.")
    ] = "1,1.5",
) -> None:
    """Export a backbone (random or from a public checkpoint) to ONNX and/or TorchScript, check
    each artifact against the eager model, and publish a new store version. With
    --two-stream (or --flow-checkpoint) the version holds an RGB and a TV-L1 flow network."""
    from backbones import BackboneError
    from exporters import ExportError, export_to_store, export_two_stream_to_store
    from model_store import ModelStore, StoreError

    formats = ("onnx", "torchscript") if format is Format.both else (format.value,)
    options = dict(
        name=name,
        formats=formats,
        fp16=fp16,
        opset=opset,
        alias=alias,
        description=description,
        default_profile=default_profile,
        step=rich_step,
    )
    try:
        rgb = _load_stream(model, checkpoint, num_classes, labels, flow=False)
        if two_stream or flow_checkpoint is not None:
            if precision == PrecisionChoice.bf16:
                raise ValueError("two-stream versions are exported at fp32 or fp16, not bf16")
            options["fp16"] = fp16 or precision == PrecisionChoice.fp16
            weights = _parse_weights(fusion_weights)
            # A random flow head answers in the RGB stream's classes.
            classes = num_classes if flow_checkpoint else rgb.spec.num_classes
            flow = _load_stream(model, flow_checkpoint, classes, labels, flow=True)
            if flow_checkpoint is None and labels is None:
                labels_of_rgb = rgb.spec.labels if rgb.spec.label_set is None else None
                labelled = flow.spec.relabel(labels_of_rgb, label_set=rgb.spec.label_set)
                flow = replace(flow, spec=labelled)
            manifest = export_two_stream_to_store(
                rgb, flow, ModelStore(store), weights=weights, **options
            )
        else:
            manifest = export_to_store(
                rgb.model,
                rgb.spec,
                ModelStore(store),
                trained=rgb.trained,
                source=rgb.source,
                precision=precision.value,
                force=force,
                **options,
            )
    except (BackboneError, ExportError, StoreError, ValueError) as exc:
        raise fail(str(exc)) from None
    table = Table("artifact", "precision", "checked on", "worst rel. diff", "top-1 agreement")
    for artifact in manifest.all_artifacts:
        for report in (artifact.parity, *artifact.runtime_parity):
            top1 = [c.top1_agreement for c in report.checks if c.top1_agreement is not None]
            table.add_row(
                artifact.file,
                artifact.precision,
                report.runtime,
                f"{max(c.max_rel_diff for c in report.checks):.2g} (≤ {report.tolerance:g})",
                f"{min(top1):.0%}" if top1 else "-",
            )
    console.print(table)
    agreement = manifest.precision_agreement
    if agreement is not None:
        verdict = "FORCED below the bar" if agreement.forced else "within the bar"
        console.print(f"{agreement.precision} on {agreement.runtime} vs fp32 ({verdict}):")
        for check in agreement.checks:
            console.print(
                f"  {check.weights}: top-1 {check.top1_agreement:.1%}, "
                f"max |Δp| {check.max_abs_prob_diff:.2g} ({check.samples} clips)"
            )
    target = f", alias {alias!r}" if alias else ""
    console.print(
        f"published [bold]{manifest.name}[/] version {manifest.version}{target} in {store}"
    )


def _load_stream(
    model: str, checkpoint: Path | None, num_classes: int | None, labels: str | None, *, flow: bool
):
    """One stream's network and spec: read from a public file, or random weights (with a
    warning); a random flow stream gets the model's recipe as a TV-L1 flow recipe."""
    from backbones import create_model, load_checkpoint
    from exporters import Stream, describe_checkpoint

    kind = "flow " if flow else ""
    if checkpoint is not None:
        with rich_step(f"Loading {checkpoint.name} as {kind}{model}"):
            net, spec = load_checkpoint(checkpoint, model=model, num_classes=num_classes)
        if (spec.recipe.modality == "flow") != flow:
            option = "--flow-checkpoint" if spec.recipe.modality == "flow" else "--checkpoint"
            raise ValueError(
                f"{checkpoint.name} holds a {spec.recipe.modality} network "
                f"({spec.recipe.in_channels} input channels); give it as {option}"
            )
        source = describe_checkpoint(checkpoint, net.checkpoint_layout)
    else:
        with rich_step(f"Building {kind}{model} with random weights"):
            net = create_model(model, num_classes=num_classes, in_channels=2 if flow else 3)
            spec = net.spec
        source = None
        err_console.print(
            f"[bold yellow]warning:[/] no {'--flow-checkpoint' if flow else '--checkpoint'}: "
            f"exporting RANDOM {kind}weights (the manifest says trained: false); predictions "
            "will be meaningless"
        )
    if labels is not None:
        spec = with_labels(spec, labels)
    return Stream(net, spec, trained=checkpoint is not None, source=source)


def _parse_weights(text: str) -> tuple[float, float]:
    try:
        rgb, flow = (float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--fusion-weights takes two numbers RGB,FLOW, got {text!r}") from None
    if rgb <= 0 or flow <= 0:
        raise ValueError(f"--fusion-weights must be positive, got {text!r}")
    return rgb, flow


def with_labels(spec: ModelSpec, labels: str) -> ModelSpec:
    """The spec with class names from a bundled label set or a text file."""
    if labels in list_label_sets():
        return spec.relabel(label_set=labels)
    path = Path(labels)
    if not path.is_file():
        raise ValueError(
            f"--labels {labels!r} is neither a bundled label set "
            f"({', '.join(list_label_sets())}) nor a file"
        )
    names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    return spec.relabel(names)


def export_triton(
    store: StoreOption,
    model: Annotated[str, typer.Option("--model", help="NAME, NAME@VERSION or NAME@ALIAS.")],
    out: Annotated[Path, typer.Option("--out", help="Triton model repository directory.")],
    max_batch_size: Annotated[int, typer.Option(help="Triton max_batch_size (views).")] = 32,
    max_queue_delay_us: Annotated[int, typer.Option(help="Dynamic batching delay.")] = 2000,
) -> None:
    """Write a store version as a Triton model repository (ONNX Runtime backend)."""
    from exporters import ExportError, write_triton_repository
    from model_store import ModelStore, StoreError
    from model_store.store import parse_model_ref

    try:
        name, version, alias = parse_model_ref(model)
        model_dir = write_triton_repository(
            ModelStore(store),
            name,
            out,
            version=version,
            alias=alias,
            max_batch_size=max_batch_size,
            max_queue_delay_us=max_queue_delay_us,
        )
    except (ExportError, StoreError, ValueError) as exc:
        raise fail(str(exc)) from None
    console.print(f"wrote {model_dir} (config.pbtxt, labels, version directory)")
    console.print(f"serve it with: tritonserver --model-repository {out}")
