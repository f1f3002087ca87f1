"""How close ONNX Runtime gets to this box's fp32 peak, per model family.

    python benchmarks/runtime.py                               # one model per family
    python benchmarks/runtime.py --models r3d_18,x3d_m --batch 4 --seconds 10

Each model is built from the zoo with random weights, exported to ONNX by the project's
exporter into a temporary directory and run by ONNX Runtime on CPU (all cores, the session
options the service uses) on batches of random views of the model's input for `--seconds`.
Achieved GFLOP/s = FLOPs per view (torch's FLOP counter: 2 per multiply-accumulate of
convolutions and matmuls, as the model table of docs/models.md halves) × views/s. The peak is
numpy's float32 matrix multiply (BLAS sgemm, 2048², all cores), measured in the same run: the ratio
says how much of the box a family's convolutions use.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from backbones import create_model
from exporters.onnx import export_onnx
from service.runtimes.base import RuntimeOptions
from service.runtimes.onnx import OnnxRuntime

#: One model per family of the zoo, smallest first.
FAMILIES = (
    "r3d_18",
    "r2plus1d_18",
    "resnext3d_101",
    "densenet3d_121",
    "p3d_63",
    "x3d_m",
    "vov3d_m",
    "tpn_slowonly_r50",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(FAMILIES))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: all cores)")
    args = parser.parse_args()
    peak = sgemm_peak()
    print(f"fp32 matmul peak (numpy sgemm 2048²): {peak:.1f} GFLOP/s\n", flush=True)
    print("| model | GFLOP per view | views/s | GFLOP/s | ÷ sgemm peak |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="actserve-runtime-") as tmp:
        for name in args.models.split(","):
            flops, rate = measure(name, Path(tmp), args.batch, args.seconds, args.threads)
            achieved = flops * rate / 1e9
            print(
                f"| {name} | {flops / 1e9:.1f} | {rate:.2f} | {achieved:.0f} "
                f"| {achieved / peak:.2f} |",
                flush=True,
            )


def sgemm_peak(size: int = 2048, seconds: float = 3.0) -> float:
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    a @ b
    best = float("inf")
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        tick = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - tick)
    return 2 * size**3 / best / 1e9


def measure(name: str, tmp: Path, batch: int, seconds: float, threads: int) -> tuple[float, float]:
    """(FLOPs per view, views per second) of `name` exported to ONNX and run on CPU."""
    model = create_model(name).eval()
    spec = model.spec
    shape = spec.recipe.clip_shape
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, *shape))
    path = export_onnx(model, spec, tmp / f"{name}.onnx")
    del model
    runtime = OnnxRuntime(path, RuntimeOptions(device="cpu", threads=threads), cuda=False)
    clips = np.random.default_rng(0).standard_normal((batch, *shape), dtype=np.float32)
    runtime.run(clips)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        runtime.run(clips)
        done += batch
    rate = done / (time.perf_counter() - started)
    runtime.close()
    path.unlink()
    return float(counter.get_total_flops()), rate


if __name__ == "__main__":
    main()
