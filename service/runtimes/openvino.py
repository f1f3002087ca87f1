"""OpenVINO's own runtime on the CPU, reading the version's fp32 ONNX artifact.

Why the native API and not ONNX Runtime's OpenVINO execution provider: both run the same
OpenVINO kernels at the same speed (issue 27's table), but the provider ships as the
`onnxruntime-openvino` wheel, which replaces the `onnxruntime` package that our
`onnxruntime-gpu` dependency provides, so the two cannot share an environment; the native API
also gives the model cache, the precision and the performance hints directly.

Choices made here, each measured in benchmarks/runtime.py and docs/runtimes.md:

- precision: `INFERENCE_PRECISION_HINT` is always pinned. OpenVINO otherwise compiles in bf16
  on its own on CPUs with AVX512-BF16 or AMX; actserve runs bf16 only for a version exported
  and checked at bf16 (its manifest's `precision`), and only where the CPU has bf16;
- threads: `INFERENCE_NUM_THREADS` is the `threads` setting (0: OpenVINO's default, one per
  core) and threads are not pinned to cores, so the decode workers keep their share;
- hint `latency` (default): one stream, one infer request, the whole batch on all threads.
  `throughput`: OpenVINO's streams, the batch split across as many infer requests run at once;
- the compiled model is cached on disk (`CACHE_DIR`): a restart imports it instead of
  compiling again.
"""

from __future__ import annotations

import logging
import os
import platform
from functools import cache
from pathlib import Path

import numpy as np

from model_store.spec import ModelSpec, TensorNames
from service.errors import ModelLoadError
from service.runtimes.base import Outputs, RuntimeOptions, to_layout

logger = logging.getLogger("actserve.runtime")

#: Manifest precision → OpenVINO's inference precision.
_OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}


@cache
def openvino_unavailable_reason() -> str | None:
    """Why OpenVINO cannot run here, or None when it can (an x86 CPU with `openvino`)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"OpenVINO's CPU plugin is x86-only here and this CPU is {platform.machine()}"
    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        return f"the openvino package cannot be imported ({exc})"
    return None


@cache
def cpu_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin computes natively in bf16 here (AVX512-BF16 or AMX)."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "actserve" / "openvino"


def compile_config(options: RuntimeOptions, precision: str, cache_dir: Path | None) -> dict:
    """The CPU plugin's configuration for `options` at `precision` ('fp32' or 'bf16')."""
    config: dict[str, str] = {
        "PERFORMANCE_HINT": options.openvino_hint.upper(),
        "INFERENCE_PRECISION_HINT": _OV_PRECISION[precision],
        "ENABLE_CPU_PINNING": "NO",
    }
    if options.threads:
        config["INFERENCE_NUM_THREADS"] = str(options.threads)
    if cache_dir is not None:
        config["CACHE_DIR"] = str(cache_dir)
    return config


def serving_precision(version_precision: str) -> tuple[str, str | None]:
    """The precision OpenVINO runs a version at here, and why it differs when it does: a bf16
    version runs in fp32 on a CPU without bf16 (higher precision, never lower); an fp16
    version is a GPU artifact, its fp32 ONNX runs here."""
    if version_precision == "bf16" and not cpu_has_bf16():
        return "fp32", "this CPU has no bf16 (AVX512-BF16 or AMX), so the bf16 version runs in fp32"
    if version_precision == "fp16":
        return "fp32", "fp16 is a GPU precision; on the CPU the fp32 artifact runs"
    return version_precision, None


class OpenVinoRuntime:
    def __init__(
        self,
        path: Path,
        options: RuntimeOptions,
        *,
        precision: str = "fp32",
        spec: ModelSpec | None = None,
    ) -> None:
        import openvino as ov

        reason = openvino_unavailable_reason()
        if reason is not None:
            raise ModelLoadError(f"cannot run on OpenVINO: {reason}")
        cache_dir = options.openvino_cache_dir or default_cache_dir()
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            logger.warning("OpenVINO's model cache is off: cannot create %s (%s)", cache_dir, exc)
            cache_dir = None
        core = ov.Core()
        config = compile_config(options, precision, cache_dir)
        try:
            self._compiled = core.compile_model(str(path), "CPU", config)
        except RuntimeError as exc:
            raise ModelLoadError(f"OpenVINO cannot compile {path.name}: {exc}") from None
        # An imported artifact names its own tensors and may take (N, T, C, H, W).
        names = spec.tensors if spec is not None else TensorNames()
        self._outputs = [self._compiled.output(name) for name in (names.logits, names.embedding)]
        self._input = names.input
        self._layout = spec.recipe.layout if spec is not None else None
        requests = 1
        if options.openvino_hint == "throughput":
            requests = int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self._requests = [self._compiled.create_infer_request() for _ in range(requests)]
        running = self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        streams = int(self._compiled.get_property("NUM_STREAMS"))
        threads = int(self._compiled.get_property("INFERENCE_NUM_THREADS"))
        #: What the CPU computes in, read back from the compiled model ('fp32' or 'bf16').
        self.precision = {"f32": "fp32"}.get(running, running)
        self.description = (
            f"openvino {ov.get_version().split('-')[0]} CPU {self.precision} ({path.name}; "
            f"{options.openvino_hint} hint: {streams} stream(s), {threads} threads, "
            f"{requests} request(s))"
        )

    def run(self, clips: np.ndarray) -> Outputs:
        if self._layout is not None:
            clips = to_layout(clips, self._layout)
        clips = np.ascontiguousarray(clips, dtype=np.float32)
        if len(self._requests) == 1 or len(clips) == 1:
            return self._infer(self._requests[0], clips)
        # Throughput: the batch in parts, one per infer request (stream), run at once.
        parts = np.array_split(clips, min(len(self._requests), len(clips)))
        for request, part in zip(self._requests, parts, strict=False):
            request.start_async({self._input: part}, share_inputs=True)
        results = []
        for request, _ in zip(self._requests, parts, strict=False):
            request.wait()
            results.append([request.get_tensor(o).data.copy() for o in self._outputs])
        return Outputs(*(np.concatenate(r) for r in zip(*results, strict=True)))

    def _infer(self, request, clips: np.ndarray) -> Outputs:
        result = request.infer({self._input: clips}, share_inputs=True)
        return Outputs(*(np.array(result[o], dtype=np.float32) for o in self._outputs))

    def close(self) -> None:
        self._requests = []
        self._compiled = None
