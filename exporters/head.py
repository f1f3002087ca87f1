"""A stored ONNX artifact with a new linear head: the base network up to its `embedding` output,
then `logits = embedding @ weight.T + bias`, edited into the graph with onnx's helper API.

Any ONNX artifact the store holds can be given a head this way, whatever produced it: the
store keeps graphs, not torch modules. The old head is cut off (every node and initializer only
it used is pruned), the embedding output is kept as it was, and the new artifact is checked
against numpy on the base artifact's own embeddings before it may be published.

    path = with_linear_head(base_onnx, weight, bias, out_path)
    report = check_head_parity(base_onnx, path, recipe, weight, bias)
    manifest = export_head_to_store(store, base, base_dir, weight, bias, labels, name="mine")
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from exporters.errors import ExportError, ParityError
from exporters.outputs import INPUT_NAME, OUTPUT_NAMES, tensor_infos
from exporters.parity import PARITY_BATCH_SIZES, compare, parity_report
from exporters.pipeline import StepReporter, log_step, publish_version, tool_versions
from model_store import (
    Manifest,
    ManifestDraft,
    ModelStore,
    ProbeProvenance,
    SimilarityCalibration,
)
from model_store.manifest import ParityReport
from model_store.spec import ModelSpec, Recipe
from model_store.store import check_name

LOGITS, EMBEDDING = OUTPUT_NAMES
HEAD_WEIGHT = "probe.head.weight"
HEAD_BIAS = "probe.head.bias"


def with_linear_head(base: Path, weight: np.ndarray, bias: np.ndarray, out: Path) -> Path:
    """Write `out`: `base` with its logits replaced by `embedding @ weight.T + bias`.

    `weight` is (K, D) for K classes over the D-wide embedding, `bias` (K,).
    """
    model = onnx.load(str(base))
    graph = model.graph
    outputs = {o.name: o for o in graph.output}
    if set(outputs) != set(OUTPUT_NAMES):
        raise ExportError(
            f"{base.name} has outputs {sorted(outputs)}; a head needs {', '.join(OUTPUT_NAMES)}"
        )
    width = outputs[EMBEDDING].type.tensor_type.shape.dim[-1].dim_value
    weight = np.ascontiguousarray(weight, dtype=np.float32)
    bias = np.ascontiguousarray(bias, dtype=np.float32)
    if weight.ndim != 2 or weight.shape[1] != width or bias.shape != (weight.shape[0],):
        raise ExportError(
            f"a head over the {width}-wide embedding needs weight (K, {width}) and bias (K,); "
            f"got {weight.shape} and {bias.shape}"
        )
    # The old head's output is renamed so that its nodes no longer reach a graph output.
    for node in graph.node:
        node.output[:] = [f"{LOGITS}.base" if name == LOGITS else name for name in node.output]
    graph.initializer.extend(
        [numpy_helper.from_array(weight, HEAD_WEIGHT), numpy_helper.from_array(bias, HEAD_BIAS)]
    )
    graph.node.append(
        helper.make_node(
            "Gemm", [EMBEDDING, HEAD_WEIGHT, HEAD_BIAS], [LOGITS], name="probe_head", transB=1
        )
    )
    batch = outputs[LOGITS].type.tensor_type.shape.dim[0].dim_param or "batch"
    new_logits = helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, [batch, len(bias)])
    graph.output.remove(outputs[LOGITS])
    graph.output.insert(0, new_logits)
    _prune(graph)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the ONNX checker rejected the new head on {base.name}: {exc}") from exc
    onnx.save(model, str(out))
    return out


def _prune(graph: onnx.GraphProto) -> None:
    """Drop the nodes, initializers and value infos that no graph output needs any more."""
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(node.input)
    initializers = [i for i in graph.initializer if i.name in needed]
    value_infos = [v for v in graph.value_info if v.name in needed]
    for field, items in (
        (graph.node, reversed(kept)),
        (graph.initializer, initializers),
        (graph.value_info, value_infos),
    ):
        del field[:]
        field.extend(items)


def check_head_parity(
    base: Path,
    artifact: Path,
    recipe: Recipe,
    weight: np.ndarray,
    bias: np.ndarray,
    *,
    batch_sizes: Sequence[int] = PARITY_BATCH_SIZES,
) -> ParityReport:
    """The new artifact against numpy on fixed random clips: its logits against the base
    artifact's embedding @ weight.T + bias (float64), its embedding against the base's."""
    import onnxruntime as ort

    def session(path: Path) -> ort.InferenceSession:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    before, after = session(base), session(artifact)
    checks = []
    for batch_size in batch_sizes:
        rng = np.random.default_rng(batch_size)
        clips = rng.standard_normal((batch_size, *recipe.clip_shape), dtype=np.float32)
        (base_embedding,) = before.run([EMBEDDING], {INPUT_NAME: clips})
        logits, embedding = after.run(list(OUTPUT_NAMES), {INPUT_NAME: clips})
        expected = base_embedding.astype(np.float64) @ weight.T.astype(np.float64) + bias
        checks.append(compare(batch_size, LOGITS, logits, expected))
        checks.append(compare(batch_size, EMBEDDING, embedding, base_embedding))
    runtime = f"onnxruntime {ort.__version__} CPU vs numpy (base embedding @ W + b)"
    # fp32's tolerance at every precision: the reference is the base artifact itself (an fp16
    # one included), and the head runs in float32 either way.
    return parity_report(checks, runtime=runtime, precision="fp32")


def export_head_to_store(
    store: ModelStore,
    base: Manifest,
    base_dir: Path,
    weight: np.ndarray,
    bias: np.ndarray,
    labels: Sequence[str],
    *,
    name: str,
    alias: str | None = "stable",
    description: str = "",
    similarity: SimilarityCalibration | None = None,
    probe: ProbeProvenance | None = None,
    step: StepReporter = log_step,
) -> Manifest:
    """Give every ONNX artifact of `base` (its files in `base_dir`) the new head, check each
    against numpy and publish them as the next version of `name`, with `labels`."""
    name = check_name(name)
    if base.streams:
        raise ExportError(
            f"{base.name}@{base.version} is a two-stream version; a head is added to a "
            "one-stream model's ONNX graph (probe one of its streams' models instead)"
        )
    spec = base.spec.model_copy(
        update={"num_classes": len(labels), "labels": tuple(labels), "label_set": None}
    )
    spec = ModelSpec.model_validate(spec.model_dump())  # the label count, validated again
    inputs, outputs = tensor_infos(spec)
    artifacts, files = [], {}
    onnx_artifacts = [a for a in base.artifacts if a.format == "onnx"]
    if not onnx_artifacts:
        raise ExportError(
            f"{base.name}@{base.version} has no ONNX artifact; a new head is added to ONNX graphs"
        )
    with tempfile.TemporaryDirectory(prefix="actserve-head-") as tmp:
        for artifact in onnx_artifacts:
            source, path = base_dir / artifact.file, Path(tmp) / artifact.file
            label = f"{artifact.file} ({artifact.precision})"
            with step(f"Adding the {len(labels)}-class head to {label}"):
                with_linear_head(source, weight, bias, path)
            with step(f"Checking {label} against numpy"):
                report = check_head_parity(source, path, spec.recipe, weight, bias)
            if not report.passed:
                raise ParityError(artifact.file, report)
            artifacts.append(
                artifact.model_copy(update={"inputs": inputs, "outputs": outputs, "parity": report})
            )
            files[artifact.file] = path
        draft = ManifestDraft(
            backbone=base.backbone,
            trained=True,
            description=description,
            default_profile=base.default_profile,
            source_checkpoint=base.source_checkpoint,
            spec=spec,
            artifacts=tuple(artifacts),
            exporter=tool_versions(),
            similarity=similarity,
            probe=probe,
        )
        return publish_version(store, name, draft, files, alias=alias, step=step)
