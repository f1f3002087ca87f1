"""How fast each runtime runs each model family on this CPU, and how close it gets to its peak.

    python benchmarks/runtime.py                                 # the six families, b1 and b8
    python benchmarks/runtime.py --models r3d_18,x3d_m --batch 1,4 --seconds 3 --rounds 3

Each model is built from the zoo with random weights and exported to ONNX by the project's
exporter into a temporary directory; the same file then runs on

- `ort`: ONNX Runtime's CPU provider, the session options the service uses;
- `ov`: OpenVINO's latency hint (one stream, the whole batch on all threads, fp32 pinned);
- `ov-tput`: OpenVINO's throughput hint (streams; the batch split across infer requests).
  The service's default (`auto`) runs a batch of one view as `ov` does and larger ones as
  `ov-tput`, several batches at once under load (service/runtimes/openvino.py);
- `ov-bf16`: OpenVINO computing in bf16, where the CPU has AVX512-BF16 or AMX (else "n/a").

Runtimes are interleaved: every round times each of them for `--seconds` on the same random
batch, in a shuffled order, and the table gives the median clips/s over rounds, the ratio to
ONNX Runtime, and GFLOP/s ÷ this box's fp32 GEMM peak. GFLOP per clip is torch's FLOP counter
(2 per multiply-accumulate of convolutions and matmuls; direct kernels that skip padding taps
can exceed 1.0 of it). The peak is the best of numpy's and torch's float32 matrix multiply
(2048², all cores), measured before and after the families: both are printed, with the load
average, because a shared box drifts.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backbones import create_model  # noqa: E402
from exporters.onnx import export_onnx  # noqa: E402
from service.runtimes.base import RuntimeOptions  # noqa: E402
from service.runtimes.onnx import OnnxRuntime  # noqa: E402
from service.runtimes.openvino import OpenVinoRuntime, cpu_has_bf16  # noqa: E402

#: The families of issue 27's table, smallest first.
FAMILIES = ("r3d_18", "r2plus1d_18", "p3d_63", "x3d_m", "vov3d_m", "tpn_slowonly_r50")
RUNTIMES = ("ort", "ov", "ov-tput", "ov-bf16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(FAMILIES))
    parser.add_argument("--batch", default="1,8", help="batch sizes, comma-separated")
    parser.add_argument("--seconds", type=float, default=3.0, help="per runtime and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="runtime threads (0: all cores)")
    args = parser.parse_args()
    batches = [int(b) for b in args.batch.split(",")]
    first = gemm_peak()
    print(f"{os.cpu_count()} CPUs; load average {load()}; bf16 on this CPU: {cpu_has_bf16()}")
    print(f"fp32 GEMM peak (2048², best of numpy and torch): {first:.0f} GFLOP/s\n", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="actserve-runtime-") as tmp:
        for name in args.models.split(","):
            rows += measure(name, Path(tmp), batches, args)
    last = gemm_peak()
    peak = max(first, last)
    print(f"\nfp32 GEMM peak again: {last:.0f} GFLOP/s; load average {load()}")
    print(f"ratios to the peak use {peak:.0f} GFLOP/s\n")
    print(
        "| model | batch | GFLOP/clip | ort clips/s | ov ÷ ort | ov-tput ÷ ort | ov-bf16 ÷ ort "
        "| ort ÷ peak | ov ÷ peak | ov-bf16 ÷ peak |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, batch, flops, rates in rows:
        ratio = {k: f"{v / rates['ort']:.2f}" for k, v in rates.items()}
        of_peak = {k: f"{flops * v / 1e9 / peak:.2f}" for k, v in rates.items()}
        cells = [ratio.get(k, "n/a") for k in RUNTIMES[1:]]
        cells += [of_peak.get(k, "n/a") for k in ("ort", "ov", "ov-bf16")]
        print(
            f"| {name} | {batch} | {flops / 1e9:.1f} | {rates['ort']:.2f} | "
            + " | ".join(cells)
            + " |"
        )


def load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def gemm_peak(size: int = 2048, seconds: float = 2.0) -> float:
    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    ta = torch.from_numpy(a)
    best = float("inf")
    for multiply in (lambda: a @ a, lambda: ta @ ta):
        multiply()
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            tick = time.perf_counter()
            multiply()
            best = min(best, time.perf_counter() - tick)
    return 2 * size**3 / best / 1e9


def runtimes(path: Path, threads: int) -> dict:
    made = {
        "ort": OnnxRuntime(path, RuntimeOptions(threads=threads), cuda=False),
        "ov": OpenVinoRuntime(path, RuntimeOptions(threads=threads, openvino_hint="latency")),
        "ov-tput": OpenVinoRuntime(
            path, RuntimeOptions(threads=threads, openvino_hint="throughput")
        ),
    }
    if cpu_has_bf16():
        latency = RuntimeOptions(threads=threads, openvino_hint="latency")
        made["ov-bf16"] = OpenVinoRuntime(path, latency, precision="bf16")
    return made


def measure(name: str, tmp: Path, batches: list[int], args) -> list:
    """[(name, batch, FLOPs per clip, {runtime: median clips/s})] for `name`."""
    model = create_model(name).eval()
    spec = model.spec
    shape = spec.recipe.clip_shape
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, *shape))
    flops = float(counter.get_total_flops())
    path = export_onnx(model, spec, tmp / f"{name}.onnx")
    del model
    made = runtimes(path, args.threads)
    rows = []
    for batch in batches:
        clips = np.random.default_rng(0).standard_normal((batch, *shape), dtype=np.float32)
        reference = made["ort"].run(clips).logits
        for key, runtime in made.items():  # warm-up, and the numbers agree
            logits = runtime.run(clips).logits
            drift = float(np.abs(logits - reference).max() / np.abs(reference).max())
            if key != "ov-bf16" and drift > 1e-4:
                raise SystemExit(f"{name} {key}: logits differ from ORT's by {drift:.2g}")
        samples: dict[str, list[float]] = {key: [] for key in made}
        for _ in range(args.rounds):
            for key in random.sample(list(made), len(made)):
                done, started = 0, time.perf_counter()
                while time.perf_counter() - started < args.seconds:
                    made[key].run(clips)
                    done += batch
                samples[key].append(done / (time.perf_counter() - started))
        rates = {key: statistics.median(v) for key, v in samples.items()}
        rows.append((name, batch, flops, rates))
        summary = ", ".join(f"{k} {v:.2f}" for k, v in rates.items())
        print(f"{name} b{batch}: {summary} clips/s; load {load()}", flush=True)
    for runtime in made.values():
        runtime.close()
    path.unlink()
    return rows


if __name__ == "__main__":
    main()
