"""Runtimes execute a model version's artifact on a batch of views.

    Runtime.run(clips (N, C, T, H, W) float32) -> Outputs(logits (N, K), embedding (N, D))

`load_runtime` picks the runtime and the artifact (`ACTSERVE_RUNTIME`, service/runtimes/select.py):
ONNX Runtime on CUDA (the fp16 artifact when there is one) when a GPU is usable, OpenVINO on x86
CPUs, ONNX Runtime's CPU provider otherwise; TorchScript when the version has only a TorchScript
artifact or it is asked for. torch is imported only by a TorchScript runtime.
"""

from service.runtimes.base import Outputs, Runtime, RuntimeOptions
from service.runtimes.select import load_runtime

__all__ = ["Outputs", "Runtime", "RuntimeOptions", "load_runtime"]
