"""The runtime protocol and the options that choose a runtime (the `runtime` settings group)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, NamedTuple, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from model_store.spec import Layout

Device = Literal["auto", "cpu", "cuda"]
RuntimeKind = Literal["auto", "onnxruntime", "openvino", "torchscript"]


class Outputs(NamedTuple):
    logits: np.ndarray  # (N, K) float32
    embedding: np.ndarray  # (N, D) float32


def to_layout(clips: np.ndarray, layout: Layout) -> np.ndarray:
    """The service's (N, C, T, H, W) views in the artifact's input layout."""
    if layout == Layout.NCTHW:
        return clips
    return np.ascontiguousarray(clips.transpose(0, 2, 1, 3, 4))


class Runtime(Protocol):
    """One loaded artifact. `run` is called from one inference thread at a time, or from up
    to `lanes` at once where the runtime has that attribute (OpenVINO's infer requests)."""

    #: What runs where, e.g. "onnxruntime 1.31.1 CUDA fp16 (model.fp16.onnx)".
    description: str

    def run(self, clips: np.ndarray) -> Outputs: ...

    def close(self) -> None: ...


class RuntimeOptions(BaseModel):
    """How model versions are run; the `runtime` group of the service's settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The `ACTSERVE_*` names (lower case, no prefix) that differ from the field's name.
    flat_names: ClassVar[dict[str, str]] = {
        "kind": "runtime",
        "threads": "runtime_threads",
        "spinning": "runtime_spinning",
    }

    kind: RuntimeKind = Field(
        "auto",
        description="Which runtime runs the models (ACTSERVE_RUNTIME): auto = ONNX Runtime's "
        "CUDA provider where a GPU is usable, OpenVINO on x86 CPUs, ONNX Runtime otherwise; "
        "or onnxruntime, openvino, torchscript. The choice is logged at start-up.",
    )
    device: Device = Field("auto", description="auto (CUDA when usable), cpu or cuda.")
    prefer_torchscript: bool = Field(
        False, description="Serve the TorchScript artifact when a version has both."
    )
    prefer_fp16: bool = Field(True, description="Use the fp16 ONNX artifact on CUDA.")
    threads: int = Field(
        0, ge=0, description="Intra-op threads (0 = the runtime's default: one per core)."
    )
    spinning: bool = Field(
        False,
        description="Let idle intra-op threads busy-wait for the next op (ONNX Runtime's "
        "allow_spinning). Off: between batches they sleep instead of taking the cores the "
        "decode workers and the event loop need.",
    )
    openvino_hint: Literal["auto", "latency", "throughput"] = Field(
        "latency",
        description="OpenVINO's performance hint: latency (default) = one stream runs each "
        "batch on all threads, one batch at a time; throughput = streams with a share of the "
        "threads each, one batch per stream at once (a lone batch split across them); auto = "
        "throughput on 2 or more cores, where a lone batch too small to split runs on all "
        "threads instead (a second, latency-compiled copy of the model), latency on one core.",
    )
    openvino_streams: int = Field(
        0,
        ge=0,
        le=64,
        description="OpenVINO's streams (NUM_STREAMS) under the throughput hint: batches run at "
        "once, the threads shared among them (0: OpenVINO's choice, one per core on small CPUs).",
    )
    openvino_cache_dir: Path | None = Field(
        None,
        description="Where OpenVINO caches compiled models, so a restart does not compile "
        "again (default: $XDG_CACHE_HOME or ~/.cache, then actserve/openvino); one folder "
        "per artifact.",
    )
    openvino_cache_max_mb: int = Field(
        2048,
        ge=0,
        description="The model cache's size bound: after a compile, the folders of the "
        "artifacts used least recently go until the cache fits (never the one just compiled; "
        "0: unbounded). A version evicted compiles again at its next load.",
    )
