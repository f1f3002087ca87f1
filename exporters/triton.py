"""Write a store version as a Triton Inference Server model repository (ONNX Runtime backend).

    <repo>/<model>/config.pbtxt
    <repo>/<model>/labels.txt
    <repo>/<model>/<version>/model.onnx

A user who outgrows one actserve process serves the same checked artifact on Triton; the
clip decoding and view sampling (the manifest's recipe) stay on the client side.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from exporters.errors import TritonExportError
from model_store import Manifest, ModelStore
from model_store.manifest import LABELS_FILE, TensorInfo

TRITON_DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16"}


def _tensor(info: TensorInfo, extra: str = "") -> str:
    dims = ", ".join(str(d) for d in info.shape[1:])
    return (
        "  {\n"
        f'    name: "{info.name}"\n'
        f"    data_type: {TRITON_DTYPES[info.dtype]}\n"
        f"    dims: [ {dims} ]\n"
        f"{extra}"
        "  }"
    )


def render_tensors(manifest: Manifest) -> str:
    """The input and output blocks: what every version of a Triton model must share."""
    if manifest.streams:
        raise TritonExportError(
            f"{manifest.name} v{manifest.version} is a two-stream version: Triton serves one "
            "network per model; export each stream as a model of its own"
        )
    artifact = manifest.artifact("onnx")
    if artifact is None:
        raise TritonExportError(f"{manifest.name} v{manifest.version} has no ONNX artifact")
    labels = f'    label_filename: "{LABELS_FILE}"\n' if manifest.spec.labels else ""
    outputs = [_tensor(t, labels if t.name == "logits" else "") for t in artifact.outputs]
    return (
        "input [\n" + ",\n".join(_tensor(t) for t in artifact.inputs) + "\n]\n"
        "output [\n" + ",\n".join(outputs) + "\n]\n"
    )


def render_config(
    manifest: Manifest, *, max_batch_size: int = 32, max_queue_delay_us: int = 2000
) -> str:
    """config.pbtxt for the manifest's ONNX artifact; dims exclude the batch axis."""
    return (
        f"# {manifest.name} version {manifest.version} from the actserve store "
        f"({manifest.backbone}, trained: {str(manifest.trained).lower()}).\n"
        f'name: "{manifest.name}"\n'
        'backend: "onnxruntime"\n'
        f"max_batch_size: {max_batch_size}\n" + render_tensors(manifest) + "dynamic_batching {\n"
        f"  max_queue_delay_microseconds: {max_queue_delay_us}\n"
        "}\n"
        "version_policy: { latest: { num_versions: 1 } }\n"
    )


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
    config = render_config(
        manifest, max_batch_size=max_batch_size, max_queue_delay_us=max_queue_delay_us
    )
    model_dir = repository / manifest.name
    config_path = model_dir / "config.pbtxt"
    if config_path.is_file() and render_tensors(manifest) not in config_path.read_text():
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
    config_path.write_text(config)
    return model_dir
