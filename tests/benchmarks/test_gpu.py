"""benchmarks/gpu.py on a machine without a GPU: every CUDA part says it is skipped and why,
and the CPU references it compares against run for real."""

from __future__ import annotations

from benchmarks import gpu


def test_the_gpu_benchmark_runs_its_cpu_path(store_root, videos, capsys) -> None:
    results = gpu.main(
        [
            "--device", "cpu", "--store", str(store_root), "--model", "tiny",
            "--video", str(videos["h264.mp4"]), "--batch", "4", "--seconds", "0.2",
            "--concurrency", "4", "--requests", "8", "--decode-workers", "1",
        ]
    )  # fmt: skip
    assert results["CPU fp32 views/s, batch 4"] > 0
    assert results["service (cpu) views/s, batching on"] > 0
    assert results["service (cpu) batching gain, on ÷ off"] > 0
    (decode,) = [name for name in results if name.startswith("CPU sampled decode s")]
    assert results[decode] > 0
    skipped = [name for name, value in results.items() if str(value).startswith("skipped")]
    assert skipped == [
        "CUDA fp32 vs fp16 parity and throughput, batching gain",
        "service ÷ raw CUDA runtime",
        "NVDEC decode",
    ]
    printed = capsys.readouterr().out
    assert "GPU: not used (--device cpu)" in printed
    assert "| NVDEC decode | skipped: --device cpu |" in printed
