"""Write a store version as a Triton Inference Server model repository (ONNX Runtime backend).

    <repo>/<model>/config.pbtxt
    <repo>/<model>/labels.txt
    <repo>/<model>/<version>/model.onnx

The configuration is a `ModelConfig` message of Triton's own schema (`model_config.proto`, as
compiled into tritonclient) written with protobuf's text format, so a field name, an enum
value or a nesting that Triton would not read cannot be produced. tritonclient is an optional
dependency (`pip install 'actserve[triton]'`); without it the export stops with that advice.

A user who outgrows one actserve process serves the same checked artifact on Triton; the
clip decoding and view sampling (the manifest's recipe) stay on the client side.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

from exporters.errors import TritonExportError
from model_store import Manifest, ModelStore
from model_store.manifest import LABELS_FILE, TensorInfo

#: Manifest dtype -> Triton's DataType enum name.
TRITON_DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16"}


def triton_schema() -> ModuleType:
    """tritonclient's compiled `model_config_pb2`, or a clear error when it is missing."""
    try:
        from tritonclient.grpc import model_config_pb2
    except (ImportError, RuntimeError) as exc:  # RuntimeError: tritonclient without grpc
        raise TritonExportError(
            "writing Triton configurations needs Triton's model config schema from "
            "tritonclient: pip install 'actserve[triton]'"
        ) from exc
    return model_config_pb2


def build_config(
    manifest: Manifest, *, max_batch_size: int = 32, max_queue_delay_us: int = 2000
) -> Any:
    """The `ModelConfig` for the manifest's ONNX artifact; dims exclude the batch axis."""
    if manifest.streams:
        raise TritonExportError(
            f"{manifest.name} v{manifest.version} is a two-stream version: Triton serves one "
            "network per model; export each stream as a model of its own"
        )
    schema = triton_schema()
    artifact = manifest.artifact("onnx")
    if artifact is None:
        raise TritonExportError(f"{manifest.name} v{manifest.version} has no ONNX artifact")
    config = schema.ModelConfig(
        name=manifest.name, backend="onnxruntime", max_batch_size=max_batch_size
    )
    for info in _file_tensors(manifest, artifact.inputs):
        config.input.add(**_tensor(schema, info))
    for info in _file_tensors(manifest, artifact.outputs):
        output = config.output.add(**_tensor(schema, info))
        if info.name == manifest.spec.tensors.logits and manifest.spec.labels:
            output.label_filename = LABELS_FILE
    config.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
    config.version_policy.latest.num_versions = 1
    return config


def _file_tensors(manifest: Manifest, infos: tuple[TensorInfo, ...]) -> list[TensorInfo]:
    """The manifest records tensors as actserve serves them (clips in NCTHW, logits,
    embedding); Triton serves the file itself: an imported artifact's own names and layout."""
    spec = manifest.spec
    names = {"clips": spec.tensors.input, "logits": spec.tensors.logits}
    names["embedding"] = spec.tensors.embedding
    shapes = {"clips": ("batch", *spec.recipe.input_shape)}
    return [
        info.model_copy(
            update={
                "name": names.get(info.name, info.name),
                "shape": shapes.get(info.name, info.shape),
            }
        )
        for info in infos
    ]


def _tensor(schema: ModuleType, info: TensorInfo) -> dict[str, Any]:
    if info.dtype not in TRITON_DTYPES:
        raise TritonExportError(f"tensor {info.name!r}: no Triton type for {info.dtype}")
    dims = info.shape[1:]
    if not all(isinstance(d, int) for d in dims):
        raise TritonExportError(
            f"tensor {info.name!r}: only the batch axis may be dynamic ({dims})"
        )
    return {
        "name": info.name,
        "data_type": schema.DataType.Value(TRITON_DTYPES[info.dtype]),
        "dims": list(dims),
    }


def render_config(
    manifest: Manifest, *, max_batch_size: int = 32, max_queue_delay_us: int = 2000
) -> str:
    """config.pbtxt text for the manifest's ONNX artifact."""
    config = build_config(
        manifest, max_batch_size=max_batch_size, max_queue_delay_us=max_queue_delay_us
    )
    return _config_text(manifest, config)


def _config_text(manifest: Manifest, config: Any) -> str:
    """A comment naming the source, then the `ModelConfig` in protobuf text format."""
    from google.protobuf import text_format

    return (
        f"# {manifest.name} version {manifest.version} from the actserve store "
        f"({manifest.backbone}, trained: {str(manifest.trained).lower()}).\n"
        + text_format.MessageToString(config)
    )


def read_config(path: Path) -> Any:
    """A config.pbtxt parsed with Triton's schema (an unknown field is an error)."""
    from google.protobuf import text_format

    try:
        return text_format.Parse(path.read_text(), triton_schema().ModelConfig())
    except text_format.ParseError as exc:
        raise TritonExportError(f"{path} is not a Triton model configuration: {exc}") from None


def write_triton_repository(
    store: ModelStore,
    name: str,
    repository: Path,
    *,
    version: int | str | None = None,
    alias: str | None = None,
    max_batch_size: int = 32,
    max_queue_delay_us: int = 2000,
) -> Path:
    """Add a (verified) store version to a Triton repository; returns the model directory.
    Versions already in the repository stay; their tensors must match the new config."""
    manifest = store.resolve(name, version=version, alias=alias)
    store.verify(manifest.name, manifest.version)
    config = build_config(
        manifest, max_batch_size=max_batch_size, max_queue_delay_us=max_queue_delay_us
    )
    model_dir = repository / manifest.name
    config_path = model_dir / "config.pbtxt"
    if config_path.is_file():
        existing = read_config(config_path)
        if (list(existing.input), list(existing.output)) != (
            list(config.input),
            list(config.output),
        ):
            raise TritonExportError(
                f"{config_path} describes other input/output tensors than {manifest.name} "
                f"v{manifest.version}; Triton needs one config for all versions of a model "
                "(use another repository or model name)"
            )
    version_dir = model_dir / str(manifest.version)
    version_dir.mkdir(parents=True, exist_ok=True)
    source = store.version_dir(manifest.name, manifest.version)
    shutil.copyfile(source / manifest.artifact("onnx").file, version_dir / "model.onnx")
    if manifest.spec.labels:
        shutil.copyfile(source / LABELS_FILE, model_dir / LABELS_FILE)
    config_path.write_text(_config_text(manifest, config))
    return model_dir
