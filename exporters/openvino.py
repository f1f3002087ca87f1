"""OpenVINO's CPU runtime over an exported ONNX file, for the parity and precision checks.

The service runs ONNX artifacts on OpenVINO (service/runtimes/openvino.py); the exporter checks
the fp32 path there too, and runs bf16 through it. The precision is always pinned: OpenVINO
compiles in bf16 on its own on CPUs with AVX512-BF16 or AMX unless told f32.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from exporters.errors import ExportError
from exporters.outputs import OUTPUT_NAMES
from exporters.parity import Runner

_HINT = {"fp32": "f32", "bf16": "bf16"}


@cache
def openvino_version() -> str | None:
    """OpenVINO's version, or None when it cannot run here."""
    try:
        import openvino as ov
    except ImportError:
        return None
    return ov.get_version().split("-")[0]


@cache
def cpu_bf16() -> bool:
    """Whether OpenVINO's CPU plugin computes in bf16 here (AVX512-BF16 or AMX)."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def openvino_runner(path: Path, precision: str = "fp32") -> tuple[Runner, str]:
    """A compiled model over `path` at `precision` ('fp32' or 'bf16') and its description."""
    import openvino as ov

    if precision == "bf16" and not cpu_bf16():
        raise ExportError(
            "bf16 needs a CPU with AVX512-BF16 or AMX; this one computes in "
            + ", ".join(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        )
    compiled = ov.Core().compile_model(
        str(path), "CPU", {"INFERENCE_PRECISION_HINT": _HINT[precision]}
    )
    running = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    if running != _HINT[precision]:
        raise ExportError(f"OpenVINO compiled {path.name} in {running}, not {precision}")
    request = compiled.create_infer_request()
    outputs = [compiled.output(name) for name in OUTPUT_NAMES]

    def run(clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        result = request.infer({0: np.ascontiguousarray(clips, dtype=np.float32)})
        logits, embedding = (np.array(result[o], dtype=np.float32) for o in outputs)
        return logits, embedding

    return run, f"openvino {openvino_version()} CPU {precision}"
