"""Sampled decode: actserve against its peers decord and torchcodec, side by side in one run.

    python benchmarks/decode.py                  # the matrix below, 3 interleaved rounds
    python benchmarks/decode.py --rounds 5 --cache /tmp/actserve-bench --only 320x240

The peers are a benchmark extra, not a dependency of the service:

    pip install -e ".[bench]"                    # decord, torchcodec 0.13, litserve, py-spy
    apt-get update && apt-get install -y ffmpeg  # the FFmpeg shared libraries torchcodec loads

torchcodec 0.13 is the newest release whose CPU wheel imports beside CPU torch 2.13 (later
wheels link CUDA libraries); it brings no FFmpeg of its own and loads the system's shared
libraries (FFmpeg 4-8; Debian 12's `ffmpeg` package installs 5.1). A peer that does not
import is reported and left out.

The matrix: five files (synthetic: a pan over multi-octave noise with grain and a moving box,
written once into the cache directory) × two plans, each plan the frames a recipe needs:
"16 frames spread" is TSN-style segment sampling (one frame from the middle of each of 16
equal segments), "one 16-frame clip" the centred clip of 16 consecutive frames. Every
decoder gets the same frame indices: actserve chooses them (its packet index and plan) and
decord (`get_batch`) and torchcodec (`get_frames_at`, approximate seek mode) are asked for
exactly those. Times include opening the file; actserve's also include its probe, packet
scan, plan and conversion of the frames to the recipe's size, the peers' their conversion
to full-size RGB. All decoders let FFmpeg pick its thread count. Each round runs every
(file, plan, decoder) once in a shuffled order; the table shows medians and
actserve ÷ the faster peer (below 1: actserve is faster).

Before timing, the frames are checked against an exact sequential PyAV decode of the whole
file: actserve's converted frames must equal, pixel for pixel, the same frames of the
sequential decode put through the same conversion; each peer's frames must be closer to the
frame at the asked index than to its neighbours (their colour conversion differs slightly).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from model_store.spec import Recipe, Sampling
from service.video import DecodeOptions, VideoLimits, index_video, plan_views, sample_frames
from service.video.pixels import FrameConverter

FPS = 30


@dataclass(frozen=True)
class Case:
    name: str
    codec: str
    seconds: int
    size: tuple[int, int]
    gop: int
    suffix: str

    @property
    def file_name(self) -> str:
        label = self.name.lower().replace(" ", "_").replace(",", "").replace(".", "")
        return f"{label}.{self.suffix}"


CASES = (
    Case("10 s 320x240 H.264", "libx264", 10, (320, 240), 250, "mp4"),
    Case("60 s 1080p H.264, keyframe every 30", "libx264", 60, (1920, 1080), 30, "mp4"),
    Case("60 s 1080p H.264, keyframe every 250", "libx264", 60, (1920, 1080), 250, "mp4"),
    Case("60 s 1080p MJPEG", "mjpeg", 60, (1920, 1080), 1, "avi"),
    Case("60 s 720p VP9", "libvpx-vp9", 60, (1280, 720), 250, "webm"),
)

_PIXELS = dict(
    num_crops=1,
    short_side=256,
    crop_size=224,
    pixel_scale=255.0,
    mean=(123.675, 116.28, 103.53),
    std=(58.395, 57.12, 57.375),
)
PLANS = {
    "16 frames spread": Recipe(
        sampling=Sampling.SEGMENTS, clip_len=16, frame_interval=1, num_clips=1, **_PIXELS
    ),
    "one 16-frame clip": Recipe(clip_len=16, frame_interval=1, num_clips=1, **_PIXELS),
}
LIMITS = VideoLimits(max_upload_bytes=2**30)  # 60 s of 1080p MJPEG is 260 MB
OPTIONS = DecodeOptions()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "actserve" / "bench-videos"
    )
    parser.add_argument("--only", default="", help="run the files whose name contains this")
    parser.add_argument("--no-check", action="store_true", help="skip the frame checks")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    cases = [c for c in CASES if args.only in c.name]
    paths = {c.name: ensure_video(c, args.cache) for c in cases}

    decoders: dict[str, Callable[[Path, Recipe, list[int]], object]] = {"actserve": run_actserve}
    for name, loader in (("decord", load_decord), ("torchcodec", load_torchcodec)):
        try:
            decoders[name] = loader()
        except Exception as error:  # a missing peer is reported, not fatal
            print(f"{name}: not available ({type(error).__name__}: {error})")
    print(versions(decoders))

    indices = {
        (c, p): chosen_positions(paths[c], recipe) for c in paths for p, recipe in PLANS.items()
    }
    if not args.no_check:
        for case in paths:
            check_frames(paths[case], case, indices, decoders)

    times: dict[tuple[str, str, str], list[float]] = {}
    for round_ in range(args.rounds):
        tasks = [(c, p, d) for c in paths for p in PLANS for d in decoders]
        random.Random(round_).shuffle(tasks)
        for case, plan, decoder in tasks:
            started = time.perf_counter()
            decoders[decoder](paths[case], PLANS[plan], indices[case, plan])
            times.setdefault((case, plan, decoder), []).append(time.perf_counter() - started)
        print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    print_tables(paths, decoders, times)


# Decoders: each takes (path, recipe, frame indices) and returns the frames.


def run_actserve(path: Path, recipe: Recipe, indices: list[int]) -> np.ndarray:
    """The service's worker job: probe, scan, plan, decode and convert (indices are its own)."""
    sampled = sample_frames(path, recipe, OPTIONS, LIMITS)
    DECODED[path.name, recipe.sampling] = sampled.frames_decoded
    return sampled.frames


def load_decord() -> Callable[[Path, Recipe, list[int]], np.ndarray]:
    import decord

    def run(path: Path, recipe: Recipe, indices: list[int]) -> np.ndarray:
        reader = decord.VideoReader(os.fspath(path), ctx=decord.cpu(0), num_threads=0)
        return reader.get_batch(indices).asnumpy()

    return run


def load_torchcodec() -> Callable[[Path, Recipe, list[int]], np.ndarray]:
    from torchcodec.decoders import VideoDecoder

    def run(path: Path, recipe: Recipe, indices: list[int]) -> np.ndarray:
        decoder = VideoDecoder(
            os.fspath(path),
            seek_mode="approximate",
            num_ffmpeg_threads=0,
            dimension_order="NHWC",
        )
        return decoder.get_frames_at(indices).data.numpy()

    return run


def versions(decoders: dict[str, object]) -> str:
    parts = [f"PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info})"]
    if "decord" in decoders:
        import decord

        parts.append(f"decord {decord.__version__}")
    if "torchcodec" in decoders:
        import torchcodec

        parts.append(f"torchcodec {torchcodec.__version__}")
    return f"{', '.join(parts)}; {os.cpu_count()} CPUs"


# Frame choice and checks.


def chosen_positions(path: Path, recipe: Recipe) -> list[int]:
    """The frame indices (presentation order) actserve decodes for `recipe`, slot by slot."""
    indexed = index_video(path, LIMITS)
    plan = plan_views(indexed.info, recipe, profile="accurate", limits=LIMITS)
    return indexed.index.position_of(plan.times_s).ravel().tolist()


def check_frames(
    path: Path,
    case: str,
    indices: dict[tuple[str, str], list[int]],
    decoders: dict[str, Callable[[Path, Recipe, list[int]], object]],
) -> None:
    """Compare every decoder's frames with an exact sequential decode of the whole file."""
    plans = {plan: indices[case, plan] for plan in PLANS}
    needed = {i + d for chosen in plans.values() for i in chosen for d in (-1, 0, 1)}
    converters = {}
    for plan, recipe in PLANS.items():
        sampled = sample_frames(path, recipe, OPTIONS, LIMITS)
        converters[plan] = (sampled, FrameConverter(sampled.plan, recipe))
    full: dict[int, np.ndarray] = {}
    converted: dict[tuple[str, int], np.ndarray] = {}
    with av.open(os.fspath(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for position, frame in enumerate(container.decode(stream)):
            if position in needed:
                full[position] = frame.to_ndarray(format="rgb24")
            for plan, (_, convert) in converters.items():
                if position in plans[plan]:
                    converted[plan, position] = convert(frame)
    for plan, (sampled, _) in converters.items():
        wanted = sorted(set(plans[plan]))
        expected = np.stack([converted[plan, p] for p in wanted])
        same = expected.shape == sampled.frames.shape and np.array_equal(expected, sampled.frames)
        report = [f"actserve {'identical' if same else 'DIFFERENT'}"]
        for name, decoder in decoders.items():
            if name == "actserve":
                continue
            frames = np.asarray(decoder(path, PLANS[plan], plans[plan]))
            wrong, worst = 0, 0.0
            for frame, index in zip(frames, plans[plan], strict=True):
                errors = {
                    d: float(np.abs(frame.astype(np.int16) - full[index + d]).mean())
                    for d in (-1, 0, 1)
                    if index + d in full
                }
                wrong += min(errors, key=errors.__getitem__) != 0
                worst = max(worst, errors[0])
            report.append(
                f"{name} {'same frames' if not wrong else f'{wrong} OTHER FRAMES'} "
                f"(mean |diff| ≤ {worst:.1f})"
            )
        print(f"check {case}, {plan}: {'; '.join(report)}", flush=True)
        if not same:
            raise SystemExit(f"actserve's frames differ from an exact decode: {case}, {plan}")


# Output.


def print_tables(paths, decoders, times) -> None:
    def median(case: str, plan: str, decoder: str) -> float | None:
        runs = times.get((case, plan, decoder))
        return statistics.median(runs) if runs else None

    peers = [d for d in decoders if d != "actserve"]
    print()
    print("| file | plan | actserve s (decoded) | " + " | ".join(f"{p} s" for p in peers), end="")
    print(" | actserve ÷ best peer |")
    print("|---|---|---:|" + "---:|" * len(peers) + "---:|")
    ratios: dict[tuple[str, str], float | None] = {}
    for case in paths:
        for plan, recipe in PLANS.items():
            ours = median(case, plan, "actserve")
            theirs = [median(case, plan, p) for p in peers]
            best = min((t for t in theirs if t is not None), default=None)
            ratios[case, plan] = ours / best if ours and best else None
            decoded = DECODED.get((paths[case].name, recipe.sampling))
            cells = " | ".join(_cell(t) for t in theirs)
            print(
                f"| {case} | {plan} | {_cell(ours)} ({decoded}) | {cells} "
                f"| {_cell(ratios[case, plan])} |"
            )
    print()
    print("| sampled decode, actserve ÷ best of " + " and ".join(peers) + " | ", end="")
    print(" | ".join(PLANS) + " |")
    print("|---|" + "---|" * len(PLANS))
    for case in paths:
        print(f"| {case} | " + " | ".join(_cell(ratios[case, p]) for p in PLANS) + " |")


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


# Test videos.


def ensure_video(case: Case, cache: Path) -> Path:
    path = cache / case.file_name
    if not path.exists():
        print(f"writing {path} ...", flush=True)
        write_video(path, case)
    return path


def write_video(path: Path, case: Case) -> None:
    """A pan over multi-octave noise, a moving box and grain: work for the encoder."""
    width, height = case.size
    frames = case.seconds * FPS
    rng = np.random.default_rng(0)
    pad = 4 * frames + 64
    texture = np.zeros((height + 64, width + pad), dtype=np.float32)
    for octave in (8, 32, 128):
        coarse = rng.random(((height + 64) // octave + 2, (width + pad) // octave + 2))
        fine = np.kron(coarse, np.ones((octave, octave), dtype=np.float32))
        texture += fine[: height + 64, : width + pad] * (octave / 168)
    texture = (texture / texture.max() * 200).astype(np.uint8)
    grain = rng.integers(0, 18, size=(7, height, width, 1), dtype=np.uint8)
    box = max(16, height // 7)
    tmp = path.with_name(f"part-{path.name}")
    with av.open(os.fspath(tmp), "w") as container:
        stream = container.add_stream(case.codec, rate=FPS)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p" if case.codec == "mjpeg" else "yuv420p"
        if case.codec == "libx264":
            stream.options = {"preset": "veryfast", "crf": "23", "g": str(case.gop)}
        elif case.codec == "libvpx-vp9":
            stream.options = {
                "deadline": "realtime",
                "cpu-used": "8",
                "crf": "33",
                "b": "0",
                "row-mt": "1",
                "g": str(case.gop),
            }
        else:  # MJPEG: every frame a keyframe, about 35 Mbit/s at 1080p like a camera's
            stream.bit_rate = 35_000_000 * width * height // (1920 * 1080)
        for index in range(frames):
            x, y = 4 * index, int(32 + 24 * np.sin(index / 25))
            grey = texture[y : y + height, x : x + width]
            frame = np.stack([grey, np.roll(grey, 7, axis=1), np.roll(grey, 13, axis=0)], -1)
            frame += np.roll(grain[index % 7], index, axis=1)  # temporal grain, as cameras have
            bx, by = (index * 9) % (width - box), (index * 5) % (height - box)
            frame[by : by + box, bx : bx + box] = (230, 60, 40)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    tmp.rename(path)


DECODED: dict[tuple[str, str], int] = {}

if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
