"""ONNX Runtime: the CUDA execution provider when a GPU is usable, the CPU provider otherwise."""

from __future__ import annotations

import contextlib
import ctypes
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from model_store.spec import ModelSpec, TensorNames
from service.runtimes.base import Outputs, RuntimeOptions, to_layout


@cache
def cuda_unavailable_reason() -> str | None:
    """Why ONNX Runtime cannot run on a GPU here, or None when it can.

    onnxruntime-gpu lists its CUDA provider even on machines without a GPU or CUDA libraries;
    creating a session there logs errors and silently falls back. So: look for the driver and
    a device first, then make a tiny session and see which provider it really got.
    """
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "this onnxruntime build has no CUDA provider"
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA driver (libcuda.so.1) found"
    count = ctypes.c_int(0)
    if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return "the NVIDIA driver reports an error"
    if count.value == 0:
        return "no CUDA device visible"
    # CUDA/cuDNN from the nvidia-* wheels, when installed; older builds lack the call.
    with contextlib.suppress(Exception):
        ort.preload_dlls()
    session = _probe_session(ort)
    ort.set_default_logger_severity(2)
    if session.get_providers()[0] != "CUDAExecutionProvider":
        return "the CUDA provider failed to start (CUDA or cuDNN libraries missing?)"
    return None


def _probe_session(ort: ModuleType) -> Any:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    options = ort.SessionOptions()
    options.log_severity_level = 4
    ort.set_default_logger_severity(4)
    return ort.InferenceSession(
        onnx.to_string(model), options, providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
    )


class OnnxRuntime:
    def __init__(
        self,
        path: Path,
        options: RuntimeOptions,
        *,
        cuda: bool,
        precision: str = "fp32",
        spec: ModelSpec | None = None,
    ) -> None:
        import onnxruntime as ort

        session_options = ort.SessionOptions()
        session_options.log_severity_level = 3
        if options.threads:
            session_options.intra_op_num_threads = options.threads
        # NOTE: spinning threads busy-wait between ops and batches: on a CPU box that serves
        # video they burned ~1.9 cores at one request at a time, cores the decode workers need.
        spin = "1" if options.spinning else "0"
        session_options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        session_options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        providers = (
            ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
        )
        self._session = ort.InferenceSession(str(path), session_options, providers=providers)
        device = self._session.get_providers()[0].removesuffix("ExecutionProvider")
        self.description = f"onnxruntime {ort.__version__} {device} {precision} ({path.name})"
        # An imported artifact names its own tensors and may take (N, T, C, H, W).
        names = spec.tensors if spec is not None else TensorNames()
        self._input, self._outputs = names.input, [names.logits, names.embedding]
        self._layout = spec.recipe.layout if spec is not None else None

    def run(self, clips: np.ndarray) -> Outputs:
        if self._layout is not None:
            clips = to_layout(clips, self._layout)
        logits, embedding = self._session.run(self._outputs, {self._input: clips})
        return Outputs(logits, embedding)

    def close(self) -> None:
        self._session = None
