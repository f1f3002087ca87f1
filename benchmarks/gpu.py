"""The GPU path in one run: runtime precision and batching, the service, and video decode.

    python benchmarks/gpu.py                          # r3d_18, random weights: ~3 min on a GPU
    python benchmarks/gpu.py --store S --model M      # a stored version (with an fp16 artifact)
    python benchmarks/gpu.py --device cpu             # the CPU references alone (what CI runs)

Measured side by side in one process, on one device:

1. **runtime**: the fp32 and fp16 ONNX artifacts on ONNX Runtime's CUDA provider: parity
   (largest |Δ logit| relative to the largest logit, and top-1 agreement, on random views) and
   views/s at batch 1 and at `--batch`; the batching gain is views/s at `--batch` ÷ at 1
   (target ≥ 4×: a GPU at batch 1 is mostly idle).
2. **service**: the version served on loopback (`service.embedded`) at `--concurrency`
   requests at once, batching on (`max_batch_views` = `--batch`) and off (1 view per batch):
   req/s, views/s, the batching gain in the service, and the service's views/s ÷ the bare
   runtime's at `--batch` (target ≥ 0.9).
3. **decode**: actserve's CPU sampled decode of a 1080p H.264 file against NVDEC on the same
   frames: torchcodec's CUDA decoder when its build has one, else PyNvVideoCodec when
   installed; a clear "skipped" line when neither can run.

Without a usable GPU (or with `--device cpu`) each CUDA measurement prints `skipped: <why>`
and the CPU references still run, so the script stays tested (tests/benchmarks).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import numpy as np

from model_store import Manifest, ModelStore
from service.embedded import EmbeddedServer
from service.runtimes.base import RuntimeOptions
from service.runtimes.onnx import OnnxRuntime, cuda_unavailable_reason
from service.settings import Settings
from service.video import DecodeOptions, VideoLimits, index_video, plan_views, sample_frames


def main(argv: Sequence[str] | None = None) -> dict[str, float | str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=None, help="default: export r3d_18")
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", choices=("auto", "cpu"), default="auto")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0, help="per runtime measurement")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--requests", type=int, default=160)
    parser.add_argument("--decode-workers", type=int, default=max(2, (os.cpu_count() or 2) // 2))
    parser.add_argument("--video", type=Path, default=None, help="default: a 1080p H.264 file")
    args = parser.parse_args(argv)
    why_not = "--device cpu" if args.device == "cpu" else cuda_unavailable_reason()
    print(f"GPU: {'usable' if why_not is None else f'not used ({why_not})'}", flush=True)
    results: dict[str, float | str] = {}
    with tempfile.TemporaryDirectory(prefix="actserve-gpu-") as tmp:
        store = args.store or export_model(Path(tmp) / "store")
        manifest = ModelStore(store).resolve(args.model)
        video = args.video or write_test_video(Path(tmp) / "clip.mp4")
        runtime_section(store, manifest, args, why_not, results)
        service_section(store, manifest, video, args, why_not, results)
        decode_section(video, manifest, why_not, results)
    return results


# 1. The runtime.


def runtime_section(store: Path, manifest: Manifest, args, why_not: str | None, results) -> None:
    directory = ModelStore(store).version_dir(manifest.name, manifest.version)
    shape = manifest.spec.recipe.clip_shape
    clips = np.random.default_rng(0).standard_normal((args.batch, *shape), dtype=np.float32)
    cpu = OnnxRuntime(
        directory / manifest.artifact("onnx", "fp32").file, RuntimeOptions(), cuda=False
    )
    report(results, "CPU fp32 views/s, batch 1", views_per_s(cpu, clips[:1], args.seconds))
    report(results, f"CPU fp32 views/s, batch {args.batch}", views_per_s(cpu, clips, args.seconds))
    if why_not is not None:
        skip(results, "CUDA fp32 vs fp16 parity and throughput, batching gain", why_not)
        return
    fp32 = OnnxRuntime(
        directory / manifest.artifact("onnx", "fp32").file, RuntimeOptions(), cuda=True
    )
    reference = cpu.run(clips).logits
    gpu32 = fp32.run(clips).logits
    report(
        results, "CUDA fp32 vs CPU fp32: max |Δ logit| / max |logit|", relative(gpu32, reference)
    )
    one = views_per_s(fp32, clips[:1], args.seconds)
    full = views_per_s(fp32, clips, args.seconds)
    report(results, "CUDA fp32 views/s, batch 1", one)
    report(results, f"CUDA fp32 views/s, batch {args.batch}", full)
    report(results, f"batching gain, batch {args.batch} ÷ batch 1 (target ≥ 4)", full / one)
    results["raw views/s"] = full
    half = manifest.artifact("onnx", "fp16")
    if half is None:
        skip(results, "CUDA fp16", f"{manifest.name} v{manifest.version} has no fp16 artifact")
        return
    fp16 = OnnxRuntime(directory / half.file, RuntimeOptions(), cuda=True, precision="fp16")
    gpu16 = fp16.run(clips).logits
    report(results, "CUDA fp16 vs fp32: max |Δ logit| / max |logit|", relative(gpu16, gpu32))
    agree = float(np.mean(gpu16.argmax(1) == gpu32.argmax(1)))
    report(results, "CUDA fp16 vs fp32: top-1 agreement", agree)
    half_rate = views_per_s(fp16, clips, args.seconds)
    report(results, f"CUDA fp16 views/s, batch {args.batch}", half_rate)
    report(results, "fp16 ÷ fp32 throughput", half_rate / full)


def views_per_s(runtime: OnnxRuntime, clips: np.ndarray, seconds: float) -> float:
    runtime.run(clips)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        runtime.run(clips)
        done += len(clips)
    return done / (time.perf_counter() - started)


def relative(values: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(values - reference).max() / max(1.0, float(np.abs(reference).max())))


# 2. The service.


def service_section(
    store: Path, manifest: Manifest, video: Path, args, why_not: str | None, results
) -> None:
    device = "cpu" if why_not is not None else "cuda"
    data = video.read_bytes()
    rates = {}
    for mode, batch_views in (("on", args.batch), ("off", 1)):
        settings = Settings(
            store=store,
            default_model=manifest.name,
            device=device,
            max_batch_views=batch_views,
            max_delay_ms=5.0 if mode == "on" else 0.0,
            max_queue_views=100_000,
            # measure batching, not admission: nothing is refused at the door
            max_pending_decodes=100_000,
            max_concurrent_uploads=100_000,
            decode_workers=args.decode_workers,
            warmup_batch_sizes=[1, batch_views],
        )
        with EmbeddedServer(settings) as server:
            views, seconds = asyncio.run(drive(server.url, data, args.concurrency, args.requests))
        rates[mode] = views / seconds
        report(results, f"service ({device}) views/s, batching {mode}", rates[mode])
    report(results, f"service ({device}) batching gain, on ÷ off", rates["on"] / rates["off"])
    if "raw views/s" in results:
        ratio = rates["on"] / float(results["raw views/s"])
        report(results, "service ÷ raw CUDA runtime (target ≥ 0.9)", ratio)
    else:
        skip(results, "service ÷ raw CUDA runtime", why_not or "no CUDA runtime measured")


async def drive(url: str, video: bytes, concurrency: int, requests: int) -> tuple[int, float]:
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        remaining = iter(range(requests))
        views = 0

        async def worker() -> None:
            nonlocal views
            for _ in remaining:
                response = await client.post("/classify", files={"video": ("v", video)})
                response.raise_for_status()
                views += response.json()["video"]["views"]

        await client.post("/classify", files={"video": ("v", video)})  # warm
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return views, time.perf_counter() - started


# 3. Decode.


def decode_section(video: Path, manifest: Manifest, why_not: str | None, results) -> None:
    recipe = manifest.spec.recipe
    limits = VideoLimits()
    options = DecodeOptions()
    indexed = index_video(video, limits)
    plan = plan_views(indexed.info, recipe, limits=limits)
    indices = np.unique(indexed.index.position_of(plan.times_s)).tolist()
    cpu = timed(lambda: sample_frames(video, recipe, options, limits))
    report(results, f"CPU sampled decode s ({len(indices)} frames)", cpu)
    if why_not is not None:
        skip(results, "NVDEC decode", why_not)
        return
    for name, load in (("torchcodec CUDA", torchcodec_cuda), ("PyNvVideoCodec", pynvvideocodec)):
        try:
            decode = load(video)
            decode(indices)  # warm: context creation and the first frames
        except Exception as error:  # a missing or CPU-only build: say which and why
            skip(results, f"NVDEC decode ({name})", f"{type(error).__name__}: {error}")
            continue
        gpu = timed(lambda decode=decode: decode(indices))
        report(results, f"NVDEC decode s ({name}, same frames)", gpu)
        report(results, f"CPU ÷ NVDEC decode time ({name})", cpu / gpu)
        return


def torchcodec_cuda(video: Path) -> Callable[[list[int]], object]:
    from torchcodec.decoders import VideoDecoder

    def decode(indices: list[int]) -> object:
        decoder = VideoDecoder(os.fspath(video), device="cuda", seek_mode="approximate")
        return decoder.get_frames_at(indices).data

    return decode


def pynvvideocodec(video: Path) -> Callable[[list[int]], object]:
    import PyNvVideoCodec as nvc

    def decode(indices: list[int]) -> object:
        decoder = nvc.SimpleDecoder(os.fspath(video), gpu_id=0, use_device_memory=True)
        return decoder.get_batch_frames_by_index(indices)

    return decode


def timed(work: Callable[[], object], rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# Set-up and output.


def export_model(store: Path, name: str = "r3d_18") -> Path:
    """`name` with random weights, fp32 and fp16 ONNX, into a fresh store (needs torch)."""
    from backbones import create_model
    from exporters import export_to_store

    model = create_model(name).eval()
    export_to_store(model, model.spec, ModelStore(store), trained=False, fp16=True)
    return store


def write_test_video(path: Path) -> Path:
    """10 s of 1080p H.264 (keyframe every 250 frames), as in benchmarks/decode.py."""
    from benchmarks.decode import Case, write_video

    write_video(path, Case("gpu", "libx264", 10, (1920, 1080), 250, "mp4"))
    return path


def report(results: dict[str, float | str], name: str, value: float) -> None:
    results[name] = value
    print(f"| {name} | {value:.4g} |", flush=True)


def skip(results: dict[str, float | str], name: str, why: str) -> None:
    results[name] = f"skipped: {why}"
    print(f"| {name} | skipped: {why} |", flush=True)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
