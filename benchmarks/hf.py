"""ONNX Runtime vs `transformers` eager on CPU, for a ViT-B-sized VideoMAE.

    python benchmarks/hf.py                       # ViT-B: 16 frames of 224², 12 layers of 768
    python benchmarks/hf.py --rounds 5 --batch 2
    python benchmarks/hf.py --tiny                # a seconds-long smoke run of the script

The model is `VideoMAEForVideoClassification` with the default configuration (the geometry of
MCG-NJU/videomae-base-finetuned-kinetics: ViT-B/16, tubelet 2, 16 × 224², 400 classes) and
random weights; no download. It is exported by `actserve export-hf`'s exporter (torch.export,
opset 18) and checked against the model first. Then `--rounds` rounds alternate the two
runtimes on the same random batch, each timing `--iterations` calls: transformers eager under
`torch.inference_mode()` (SDPA attention) and ONNX Runtime with the session options the
service uses (spinning off), both on `--threads` intra-op threads. The report gives clips/s per
runtime per round and the ratio of the medians, with the load average: on a shared box only
the ratio of one run means something.

On a CUDA machine (`--device cuda`) both run on the GPU: transformers in fp32 and fp16
(`.half()`), ONNX Runtime's CUDA provider on the fp32 artifact; the service takes the same
CUDA path for an export-hf version (it has no fp16 artifact yet: see docs/import-artifact.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from exporters.hf import HFVideoClassifier, check_hf_parity, export_hf_onnx, spec_of
from model_store import Recipe
from model_store.spec import Layout
from service.runtimes.base import RuntimeOptions
from service.runtimes.onnx import OnnxRuntime


def build(tiny: bool):
    import transformers as tf

    config = tf.VideoMAEConfig(num_labels=400)
    if tiny:
        config = tf.VideoMAEConfig(
            image_size=32, patch_size=8, num_frames=4, hidden_size=32, num_hidden_layers=2,
            num_attention_heads=2, intermediate_size=64, num_labels=400,
        )  # fmt: skip
    torch.manual_seed(0)
    model = tf.VideoMAEForVideoClassification(config).eval()
    recipe = Recipe(
        clip_len=config.num_frames,
        frame_interval=4,
        num_clips=5,
        num_crops=3,
        short_side=config.image_size,
        crop_size=config.image_size,
        pixel_scale=1.0,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        layout=Layout.NTCHW,
    )
    return model, spec_of(model, recipe)


def clips_per_s(run, batch: np.ndarray, iterations: int) -> float:
    run(batch)  # warm-up: allocations, kernels chosen
    started = time.perf_counter()
    for _ in range(iterations):
        run(batch)
    return iterations * len(batch) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="intra-op threads of both runtimes (0: one per core). On a shared box torch's "
        "OpenMP threads stall when the cores are busy: compare at 1 there.",
    )
    parser.add_argument("--tiny", action="store_true", help="a small model: checks the script")
    args = parser.parse_args()
    cuda = args.device == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)

    model, spec = build(args.tiny)
    import copy

    wrapper = HFVideoClassifier(copy.deepcopy(model))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        started = time.perf_counter()
        export_hf_onnx(wrapper, spec, path, 18)
        report = check_hf_parity(model, wrapper, path, spec)
        worst = max(c.max_rel_diff for c in report.checks)
        print(
            f"exported in {time.perf_counter() - started:.0f} s, {path.stat().st_size / 2**20:.0f} "
            f"MiB; parity vs transformers: worst rel diff {worst:.2g} (passed: {report.passed})"
        )
        runtime = OnnxRuntime(path, RuntimeOptions(threads=args.threads), cuda=cuda, spec=spec)
        batch = np.random.default_rng(0).standard_normal(
            (args.batch, *spec.recipe.clip_shape), dtype=np.float32
        )  # the service's (N, C, T, H, W) views; the runtime transposes to NTCHW
        variants = {"onnxruntime": runtime.run}
        device = torch.device(args.device)
        eager = model.to(device)
        pixel_values = torch.from_numpy(batch.transpose(0, 2, 1, 3, 4).copy()).to(device)

        def run_eager(_: np.ndarray, m=eager, x=pixel_values) -> None:
            with torch.inference_mode():
                m(pixel_values=x).logits.cpu()

        variants["transformers eager"] = run_eager
        if cuda:
            half = copy.deepcopy(model).half().to(device)
            x16 = pixel_values.half()
            variants["transformers eager fp16"] = lambda _: run_eager(_, half, x16)
        rates: dict[str, list[float]] = {name: [] for name in variants}
        for index in range(args.rounds):
            for name, run in variants.items():
                rates[name].append(clips_per_s(run, batch, args.iterations))
            line = ", ".join(f"{n} {r[-1]:.3g}" for n, r in rates.items())
            print(f"round {index + 1}: clips/s {line}")
    load = os.getloadavg()
    print(
        f"\n{runtime.description}; torch {torch.__version__} with {torch.get_num_threads()} threads"
    )
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; batch {args.batch}")
    reference = statistics.median(rates["transformers eager"])
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"{name:>24}: {median:8.3f} clips/s  ({median / reference:.2f}× transformers eager)")


if __name__ == "__main__":
    main()
