"""Bring your own model: publish an ONNX or TorchScript video classifier that actserve did not
export, with the recipe its publisher declares.

Nothing here can compare the file with the model it came from (actserve never saw that model),
so the version's parity is recorded as "declared, not checked". What can be checked is, and
an artifact that fails any of it is refused before the store is touched:

- the file loads (ONNX: the checker; TorchScript: `torch.jit.load`);
- ONNX: the named input exists, is float32 and its static axes agree with the recipe in its
  layout, with a dynamic batch axis; the named outputs exist (an intermediate tensor may be
  named as the embedding: it is then added to the graph's outputs);
- a synthetic clip batch (1 and 2 views, standard-normal values in the recipe's shape and
  layout) runs and gives finite logits (N, K) and embeddings (N, D), with K the labels' count;
- the batch of two gives the batch of one's answer for its first view (a model whose answer
  depends on its batch-mates, e.g. batch norm left in training mode, cannot be batched).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import tomllib
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from exporters.errors import ExportError
from exporters.outputs import tensor_infos
from exporters.pipeline import StepReporter, log_step, publish_version, tool_versions
from model_store import Artifact, Manifest, ManifestDraft, ModelStore, SourceCheckpoint
from model_store.manifest import ParityReport
from model_store.spec import Layout, ModelSpec, Profile, Recipe, TensorNames
from model_store.store import check_alias, check_name

ONNX_SUFFIXES = (".onnx",)
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript")
#: The batch of two must reproduce the batch of one's first view this closely (relative to the
#: output's scale): float reordering between batch sizes is ~1e-6.
BATCH_CONSISTENCY = 1e-3

#: A loaded artifact: clips in the artifact's layout -> (logits, embedding).
_Run = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class ArtifactRejected(ExportError):
    """The artifact does not agree with its declared recipe or outputs; nothing was published."""


def read_recipe_file(path: Path) -> dict[str, Any]:
    """A recipe TOML: the `Recipe` fields at the top level, an optional `[tensors]` table
    (`input`, `logits`, `embedding`). Returned as plain values, for flags to override."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ExportError(f"cannot read the recipe {path}: {exc}") from None
    tensors = data.pop("tensors", {})
    if not isinstance(tensors, dict):
        raise ExportError(f"{path}: [tensors] must be a table (input, logits, embedding)")
    return {"recipe": data, "tensors": tensors}


def build_recipe(fields: Mapping[str, Any]) -> Recipe:
    """A `Recipe` from declared fields, with a message naming what is wrong."""
    try:
        return Recipe.model_validate(dict(fields))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'recipe'}: {e['msg']}" for e in exc.errors()
        )
        raise ExportError(f"the declared recipe is not valid: {problems}") from None


def read_labels(path: Path) -> tuple[str, ...]:
    """One class name per line; blank lines and surrounding spaces ignored."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(f"cannot read the labels {path}: {exc}") from None
    labels = tuple(line.strip() for line in lines if line.strip())
    if not labels:
        raise ExportError(f"{path} holds no labels (one class name per line)")
    return labels


def import_artifact(
    path: Path,
    store: ModelStore,
    *,
    name: str,
    recipe: Recipe,
    labels: tuple[str, ...] | None = None,
    label_set: str | None = None,
    tensors: Mapping[str, str] | None = None,
    backbone: str = "imported",
    alias: str | None = None,
    description: str = "",
    default_profile: Profile = Profile.ACCURATE,
    step: StepReporter = log_step,
) -> Manifest:
    """Validate `path` against `recipe` and publish it as the next version of `name`, its
    parity "declared, not checked". `tensors` names the artifact's input and its logits and
    embedding outputs (missing names are inferred where the graph leaves no doubt)."""
    name = check_name(name)
    if alias is not None:
        check_alias(alias)
    if not path.is_file():
        raise ExportError(f"{path} is not a file")
    suffix = path.suffix.lower()
    if suffix not in ONNX_SUFFIXES + TORCHSCRIPT_SUFFIXES:
        raise ExportError(
            f"{path.name}: the file name must end in .onnx (ONNX) or one of "
            f"{', '.join(TORCHSCRIPT_SUFFIXES)} (TorchScript)"
        )
    fmt = "onnx" if suffix in ONNX_SUFFIXES else "torchscript"
    with tempfile.TemporaryDirectory(prefix="actserve-import-") as tmp:
        target = Path(tmp) / ("model.onnx" if fmt == "onnx" else "model.ts")
        with step(f"Validating {path.name} against the declared recipe"):
            if fmt == "onnx":
                names, run, runtime, opset, changed = _open_onnx(path, target, recipe, tensors)
            else:
                names, run, runtime = _open_torchscript(path, target, recipe, tensors)
                opset, changed = None, False
            num_classes, embedding_dim = _check_outputs(run, recipe, labels, label_set)
        try:
            spec = ModelSpec(
                backbone=backbone,
                recipe=recipe,
                num_classes=num_classes,
                embedding_dim=embedding_dim,
                labels=labels,
                label_set=label_set,
                tensors=names,
            )
        except ValidationError as exc:
            raise ArtifactRejected(f"the declared model is not valid: {exc}") from None
        inputs, outputs = tensor_infos(spec)
        note = (
            "imported: the input and output shapes agree with the declared recipe and labels, "
            "and synthetic clips of 1 and 2 views gave finite, batch-independent outputs; the "
            "numbers were not compared with a reference model"
        )
        if changed:
            note += f"; the embedding tensor {names.embedding!r} was added to the graph's outputs"
        artifact = Artifact(
            format=fmt,
            file=target.name,
            opset=opset,
            inputs=inputs,
            outputs=outputs,
            parity=ParityReport(
                status="declared",
                runtime=runtime,
                tolerance=None,
                checks=(),
                passed=True,
                note=note,
            ),
        )
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        draft = ManifestDraft(
            backbone=backbone,
            trained=True,
            description=description,
            default_profile=default_profile,
            source_checkpoint=SourceCheckpoint(file_name=path.name, sha256=digest, layout=fmt),
            spec=spec,
            artifacts=(artifact,),
            exporter=tool_versions(),
        )
        return publish_version(store, name, draft, {target.name: target}, alias, step)


# ONNX ----------------------------------------------------------------------------------------


def _open_onnx(
    path: Path, target: Path, recipe: Recipe, declared: Mapping[str, str] | None
) -> tuple[TensorNames, _Run, str, int | None, bool]:
    import onnx

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf and the checker raise several types
        raise ArtifactRejected(f"{path.name} is not a valid ONNX model: {exc}") from None
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    graph_inputs = {i.name: i for i in graph.input if i.name not in initializers}
    graph_outputs = {o.name: o for o in graph.output}
    declared = dict(declared or {})
    names = TensorNames(
        input=declared.get("input") or _only(graph_inputs, "input", path.name),
        logits=declared.get("logits") or _named_or_only(graph_outputs, "logits", path.name),
        embedding=declared.get("embedding") or _embedding_name(graph_outputs, path.name),
    )
    if names.input not in graph_inputs:
        raise ArtifactRejected(
            f"{path.name} has no input {names.input!r}; its inputs: {', '.join(graph_inputs)}"
        )
    if len(graph_inputs) > 1:
        others = sorted(set(graph_inputs) - {names.input})
        raise ArtifactRejected(
            f"{path.name} takes more inputs than the clips ({', '.join(others)}): actserve "
            "feeds one tensor of views"
        )
    _check_input(graph_inputs[names.input], recipe, path.name)
    if names.logits not in graph_outputs:
        raise ArtifactRejected(
            f"{path.name} has no output {names.logits!r}; its outputs: {', '.join(graph_outputs)}"
        )
    changed = False
    if names.embedding not in graph_outputs:
        produced = {out for node in graph.node for out in node.output}
        if names.embedding not in produced:
            raise ArtifactRejected(
                f"{path.name} has no output or intermediate tensor {names.embedding!r} to use "
                f"as the embedding; its outputs: {', '.join(graph_outputs)}"
            )
        # An intermediate tensor (e.g. the pooled features before the classifier) becomes an
        # output; its shape is checked on the synthetic run.
        graph.output.append(onnx.helper.make_empty_tensor_value_info(names.embedding))
        changed = True
    if changed:
        onnx.save(model, str(target))
    else:
        shutil.copyfile(path, target)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    del model
    run, runtime = _onnx_run(target, names)
    return names, run, runtime, opset, changed


def _only(tensors: Mapping[str, Any], what: str, file: str) -> str:
    if len(tensors) != 1:
        raise ArtifactRejected(
            f"{file} has {len(tensors)} graph {what}s ({', '.join(tensors)}): name the clips' "
            f"{what} (--input-name, or `input` in the recipe's [tensors])"
        )
    return next(iter(tensors))


def _named_or_only(outputs: Mapping[str, Any], role: str, file: str) -> str:
    if role in outputs:
        return role
    if len(outputs) == 1:
        return next(iter(outputs))
    raise ArtifactRejected(
        f"{file} has outputs {', '.join(outputs)}: say which is the {role} "
        f"(--{role}-output, or `{role}` in the recipe's [tensors])"
    )


def _embedding_name(outputs: Mapping[str, Any], file: str) -> str:
    if "embedding" in outputs:
        return "embedding"
    raise ArtifactRejected(
        f"{file} has outputs {', '.join(outputs)}: name the embedding, the pooled features the "
        "classifier reads (--embedding-output, or `embedding` in the recipe's [tensors]); an "
        "intermediate tensor of the graph may be named"
    )


def _dims(info: Any) -> list[int | None] | None:
    """A tensor's axes, None for a dynamic one; None when the rank is unknown."""
    tensor = info.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]


def _check_input(info: Any, recipe: Recipe, file: str) -> None:
    import onnx

    elem = info.type.tensor_type.elem_type
    if elem != onnx.TensorProto.FLOAT:
        kind = onnx.TensorProto.DataType.Name(elem)
        raise ArtifactRejected(f"{file}: input {info.name!r} is {kind}; actserve feeds float32")
    dims = _dims(info)
    expected = recipe.input_shape
    axes = "NCTHW" if recipe.layout == Layout.NCTHW else "NTCHW"
    if dims is None:
        return
    if len(dims) != 5:
        raise ArtifactRejected(
            f"{file}: input {info.name!r} has {len(dims)} axes; a {axes} clip batch has 5"
        )
    if dims[0] is not None:
        raise ArtifactRejected(
            f"{file}: input {info.name!r} has a fixed batch axis of {dims[0]}; actserve batches "
            "views, so export it with a dynamic batch axis"
        )
    wrong = [
        f"{axis} is {got}, the recipe says {want}"
        for axis, got, want in zip(axes[1:], dims[1:], expected, strict=True)
        if got is not None and got != want
    ]
    if wrong:
        raise ArtifactRejected(
            f"{file}: input {info.name!r} ({axes}) disagrees with the recipe: " + "; ".join(wrong)
        )


def _onnx_run(path: Path, names: TensorNames) -> tuple[_Run, str]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types
        raise ArtifactRejected(f"ONNX Runtime cannot load {path.name}: {exc}") from None

    def run(clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, embedding = session.run([names.logits, names.embedding], {names.input: clips})
        return logits, embedding

    return run, f"onnxruntime {ort.__version__} CPU"


# TorchScript ---------------------------------------------------------------------------------


def _open_torchscript(
    path: Path, target: Path, recipe: Recipe, declared: Mapping[str, str] | None
) -> tuple[TensorNames, _Run, str]:
    import torch

    declared = dict(declared or {})
    names = TensorNames(
        input=declared.get("input") or "clips",
        logits=declared.get("logits") or "0",
        embedding=declared.get("embedding") or "1",
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:  # torch raises RuntimeError and friends for non-archives
        raise ArtifactRejected(
            f"{path.name} is not a TorchScript archive (torch.jit.save); pickled modules and "
            f"state dicts are not loaded: {exc}"
        ) from None
    shutil.copyfile(path, target)

    def run(clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            result = module(torch.from_numpy(clips))
        picked = []
        for role in ("logits", "embedding"):
            try:
                tensor = names.pick(result, role)
            except (KeyError, ValueError) as exc:
                raise ArtifactRejected(f"{path.name}: the {role} output: {exc}") from None
            if not isinstance(tensor, torch.Tensor):
                raise ArtifactRejected(f"{path.name}: the {role} output is not a tensor")
            picked.append(tensor.float().numpy())
        return picked[0], picked[1]

    return names, run, f"torch.jit {torch.__version__} CPU"


# Both ----------------------------------------------------------------------------------------


def _check_outputs(
    run: _Run, recipe: Recipe, labels: tuple[str, ...] | None, label_set: str | None
) -> tuple[int, int]:
    """Run 1 and 2 synthetic views; returns (classes, embedding width)."""
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((2, *recipe.input_shape), dtype=np.float32)
    answers = {}
    for size in (1, 2):
        try:
            answers[size] = [np.asarray(a) for a in run(np.ascontiguousarray(batch[:size]))]
        except ArtifactRejected:
            raise
        except Exception as exc:  # whatever the runtime raises on a wrong input
            shape = "×".join(map(str, (size, *recipe.input_shape)))
            raise ArtifactRejected(
                f"the artifact failed on a synthetic {shape} {recipe.layout} clip batch: {exc}"
            ) from None
    logits, embedding = answers[2]
    for role, value in (("logits", logits), ("embedding", embedding)):
        if value.ndim != 2 or value.shape[0] != 2:
            raise ArtifactRejected(
                f"the {role} of a 2-view batch have shape {value.shape}; expected (2, width)"
            )
        if not np.isfinite(value).all():
            raise ArtifactRejected(f"the {role} of a synthetic clip batch are not all finite")
        alone = answers[1][0 if role == "logits" else 1]
        scale = float(np.abs(value).max()) or 1.0
        if alone.shape != (1, value.shape[1]):
            raise ArtifactRejected(f"the {role} of one view have shape {alone.shape}")
        if float(np.abs(alone[0] - value[0]).max()) / scale > BATCH_CONSISTENCY:
            raise ArtifactRejected(
                f"the {role} of a view change with its batch-mates (batch of 1 vs 2); actserve "
                "batches views from many requests (is batch norm in training mode?)"
            )
    num_classes = logits.shape[1]
    count = len(labels) if labels is not None else None
    if count is None and label_set is not None:
        from model_store.labels import load_label_set

        count = len(load_label_set(label_set))
    if count is not None and count != num_classes:
        raise ArtifactRejected(f"the logits have {num_classes} classes but the labels name {count}")
    return num_classes, int(embedding.shape[1])
