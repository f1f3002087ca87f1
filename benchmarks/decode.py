"""Sampled decode vs full decode vs the ffmpeg CLI, side by side in one run.

    python benchmarks/decode.py                # 720p and 1080p, 10 s and 60 s, 3 rounds
    python benchmarks/decode.py --rounds 5 --cache /tmp/actserve-bench

Test videos are synthetic (a pan over multi-octave noise, a moving box, temporal grain;
about 4 Mbit/s at 720p and 8 Mbit/s at 1080p), H.264 from
libx264 `veryfast` at its default keyframe interval of 250 frames, plus one phone-like file
with a keyframe every 30 frames; they are written once into the cache directory (outside
git). Each round runs every method on every file in a shuffled order; the table shows the
median seconds per method and the ratios. "sampled" is this package's probe + scan + plan +
decode + crop/normalise in this process; "pool" is the same through a one-worker
`DecodePool` (adds the worker round trip and the uint8 transfer). "full" is PyAV decoding
every frame (frame threads, no conversion); "ffmpeg" is `ffmpeg -threads 0 -f null`
decoding every frame, process start included. Without an ffmpeg binary that column is n/a.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import random
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from model_store.spec import Recipe
from service.video import (
    DecodeOptions,
    DecodePool,
    DecodeSettings,
    VideoLimits,
    assemble_views,
    sample_frames,
)

#: 30 float views of 16×256×256 are 377 MB: above the service's per-request default.
LIMITS = VideoLimits(max_view_bytes=2**30)
#: 10 clips × 16 frames × 3 crops at 256 (SlowOnly/X3D-style test protocol); "fast" takes
#: the centred 16-frame clip and the centre crop (1x16).
RECIPE = Recipe(
    clip_len=16,
    frame_interval=1,
    num_clips=10,
    num_crops=3,
    short_side=256,
    crop_size=256,
    pixel_scale=255.0,
    mean=(123.675, 116.28, 103.53),
    std=(58.395, 57.12, 57.375),
)
FILES = [
    # (name, seconds, (width, height), keyframe interval)
    ("720p_10s", 10, (1280, 720), 250),
    ("720p_60s", 60, (1280, 720), 250),
    ("1080p_10s", 10, (1920, 1080), 250),
    ("1080p_60s", 60, (1920, 1080), 250),
    ("1080p_60s_gop30", 60, (1920, 1080), 30),
]
FPS = 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "actserve" / "bench-videos"
    )
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, seconds, size, gop in FILES:
        paths[name] = args.cache / f"h264_{name}.mp4"
        if not paths[name].exists():
            print(f"writing {paths[name]} ...", flush=True)
            write_video(paths[name], seconds, size, gop)

    ffmpeg = shutil.which("ffmpeg")
    methods: dict[str, Callable[[Path], float | None]] = {
        "sampled 10x16": lambda p: time_sampled(p, "accurate"),
        "sampled 1x16": lambda p: time_sampled(p, "fast"),
        "full": time_full_decode,
        "ffmpeg": (lambda p: time_ffmpeg(ffmpeg, p)) if ffmpeg else (lambda p: None),
    }
    times: dict[tuple[str, str], list[float]] = {}
    for round_ in range(args.rounds):
        tasks = [(name, method) for name in paths for method in methods]
        random.Random(round_).shuffle(tasks)
        for name, method in tasks:
            seconds = methods[method](paths[name])
            if seconds is not None:
                times.setdefault((name, method), []).append(seconds)
        print(f"round {round_ + 1}/{args.rounds} done", flush=True)

    pool_times, lag = asyncio.run(time_pool(paths, args.rounds))
    print_table(paths, times, pool_times, ffmpeg)
    print(f"\nworst event-loop lag while the pool decoded: {lag * 1000:.0f} ms")
    print_transfer(paths["1080p_60s"])


def write_video(path: Path, seconds: int, size: tuple[int, int], gop: int) -> None:
    """A pan over multi-octave noise, a moving box and grain: work for the encoder."""
    width, height = size
    rng = np.random.default_rng(0)
    pad = 4 * seconds * FPS + 64
    texture = np.zeros((height + 64, width + pad), dtype=np.float32)
    for octave in (8, 32, 128):
        coarse = rng.random(((height + 64) // octave + 2, (width + pad) // octave + 2))
        fine = np.kron(coarse, np.ones((octave, octave), dtype=np.float32))
        texture += fine[: height + 64, : width + pad] * (octave / 168)
    texture = (texture / texture.max() * 200).astype(np.uint8)
    grain = rng.integers(0, 18, size=(7, height, width, 1), dtype=np.uint8)
    tmp = path.with_suffix(".part.mp4")
    with av.open(os.fspath(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23", "g": str(gop)}
        for index in range(seconds * FPS):
            x, y = 4 * index, int(32 + 24 * np.sin(index / 25))
            grey = texture[y : y + height, x : x + width]
            frame = np.stack([grey, np.roll(grey, 7, axis=1), np.roll(grey, 13, axis=0)], -1)
            frame += np.roll(grain[index % 7], index, axis=1)  # temporal grain, as cameras have
            bx, by = (index * 9) % (width - 160), (index * 5) % (height - 160)
            frame[by : by + 160, bx : bx + 160] = (230, 60, 40)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    tmp.rename(path)


def time_sampled(path: Path, profile: str) -> float:
    started = time.perf_counter()
    sampled = sample_frames(path, RECIPE, DecodeOptions(profile=profile), LIMITS)
    assemble_views(sampled, RECIPE)
    DECODED[(path.name, profile)] = sampled.frames_decoded
    return time.perf_counter() - started


def time_full_decode(path: Path) -> float:
    started = time.perf_counter()
    with av.open(os.fspath(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames = sum(1 for _ in container.decode(stream))
    TOTAL[path.name] = frames
    return time.perf_counter() - started


def time_ffmpeg(ffmpeg: str | None, path: Path) -> float | None:
    command = [ffmpeg or "ffmpeg", "-v", "error", "-threads", "0", "-i", os.fspath(path)]
    started = time.perf_counter()
    subprocess.run([*command, "-f", "null", "-"], check=True)
    return time.perf_counter() - started


async def time_pool(paths: dict[str, Path], rounds: int) -> tuple[dict[str, float], float]:
    """Median seconds of `await pool.decode` (10x16) per file, and the event loop's worst lag.

    A ticker coroutine sleeps 10 ms at a time while the decodes run; how late it wakes up
    shows whether decoding, the transfer or the normalisation ever holds the event loop.
    """
    medians = {}
    lag = 0.0

    async def ticker() -> None:
        nonlocal lag
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.01)
            lag = max(lag, time.perf_counter() - started - 0.01)

    async with DecodePool(DecodeSettings(workers=1, timeout_s=600), LIMITS) as pool:
        ticking = asyncio.create_task(ticker())
        for name, path in paths.items():
            runs = []
            for _ in range(rounds):
                started = time.perf_counter()
                await pool.decode(path, RECIPE)
                runs.append(time.perf_counter() - started)
            medians[name] = statistics.median(runs)
        ticking.cancel()
    return medians, lag


def print_table(paths, times, pool_times, ffmpeg) -> None:
    def median(name: str, method: str) -> float | None:
        runs = times.get((name, method))
        return statistics.median(runs) if runs else None

    def cell(value: float | None, digits: int = 2) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    print()
    print(f"ffmpeg: {ffmpeg or 'not found'}; PyAV {av.__version__}; {os.cpu_count()} CPUs")
    print(
        "| file | frames | sampled 10x16 s (decoded) | sampled 1x16 s (decoded) | pool 10x16 s | "
        "full decode s | ffmpeg CLI s | full / 10x16 | full / 1x16 | ffmpeg / 10x16 | "
        "ffmpeg / 1x16 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in paths:
        clips, one = median(name, "sampled 10x16"), median(name, "sampled 1x16")
        full, cli = median(name, "full"), median(name, "ffmpeg")
        print(
            f"| {name} | {TOTAL.get(paths[name].name)} "
            f"| {cell(clips)} ({DECODED.get((paths[name].name, 'accurate'))}) "
            f"| {cell(one)} ({DECODED.get((paths[name].name, 'fast'))}) "
            f"| {cell(pool_times.get(name))} | {cell(full)} | {cell(cli)} "
            f"| {cell(full / clips if full and clips else None)}x "
            f"| {cell(full / one if full and one else None)}x "
            f"| {cell(cli / clips if cli and clips else None)}x "
            f"| {cell(cli / one if cli and one else None)}x |"
        )


def print_transfer(path: Path) -> None:
    """What crosses the pipe for 30 views (10 clips × 3 crops) vs the float views built."""
    sampled = sample_frames(path, RECIPE, DecodeOptions(), LIMITS)
    started = time.perf_counter()
    blob = pickle.dumps(sampled, protocol=pickle.HIGHEST_PROTOCOL)
    pickle.loads(blob)
    pickling = time.perf_counter() - started
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        views = assemble_views(sampled, RECIPE).views
        runs.append(time.perf_counter() - started)
    assembling = statistics.median(runs)
    print()
    print(
        f"transfer for {path.name}, 10x16x3 at 256: uint8 frames {sampled.frames.shape} "
        f"= {sampled.frames.nbytes / 2**20:.1f} MiB (pickle {len(blob) / 2**20:.1f} MiB, "
        f"dumps+loads {pickling * 1000:.0f} ms) vs float32 views {views.shape} = "
        f"{views.nbytes / 2**20:.1f} MiB ({views.nbytes / sampled.frames.nbytes:.1f}x); "
        f"crop + normalise in the parent {assembling * 1000:.0f} ms"
    )


DECODED: dict[tuple[str, str], int] = {}
TOTAL: dict[str, int] = {}

if __name__ == "__main__":
    main()
