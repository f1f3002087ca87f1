"""What reference-exact resizing costs: each family's registered recipe vs the same views resized
with FFmpeg's area filter (the fast path), side by side in one run.

    python benchmarks/protocols.py               # 720p and 1080p H.264, 10 s, 3 rounds
    python benchmarks/protocols.py --rounds 5 --cache /tmp/actserve-bench

The videos are benchmarks/decode.py's kind (written once into the cache directory). For every
family the "exact" recipe is the registered one; its "area" twin keeps the sampler, the views
and the sizes and resizes with swscale's area filter instead (no pre-scale). Each round times
`sample_frames` + `assemble_views` in this process for every file and family in a shuffled
order, each pair back to back; the table shows median seconds, the median of the per-pair
ratios exact / area, and the bytes a worker sends per request (float32 frames for torch's
bilinear filter, uint8 otherwise).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.decode import Case, ensure_video  # noqa: E402
from model_store.spec import Recipe, ResizeFilter, SizeRounding  # noqa: E402
from service.video import (  # noqa: E402
    DecodeOptions,
    VideoLimits,
    assemble_views,
    sample_frames,
)

LIMITS = VideoLimits(max_view_bytes=2**31)
FILES = (
    Case("10 s 720p H.264", "libx264", 10, (1280, 720), 250, "mp4"),
    Case("10 s 1080p H.264", "libx264", 10, (1920, 1080), 250, "mp4"),
)
FAMILIES = {
    # family: registered model whose default recipe is measured
    "X3D-M (area, PySlowFast 10x3)": "x3d_m",
    "VoV3D-M (torch bilinear, 10x3)": "vov3d_m",
    "TPN SlowOnly (cv2 linear, 10x3)": "tpn_slowonly_r50",
    "P3D (cv2 stretch 182x242, 10x1)": "p3d_63",
    "3D-ResNet 2020 (240 bicubic + PIL, all windows)": "r3d_50",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "actserve" / "bench-videos"
    )
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    paths = {case.name: ensure_video(case, args.cache) for case in FILES}

    from backbones import default_spec  # torch: only to read the registered recipes

    recipes = {}
    for family, model in FAMILIES.items():
        exact = default_spec(model).recipe
        recipes[family, "exact"] = exact
        recipes[family, "area"] = area_twin(exact)
    times: dict[tuple[str, str, str], list[float]] = {}
    ratios: dict[tuple[str, str], list[float]] = {}
    sent: dict[tuple[str, str, str], int] = {}
    views: dict[tuple[str, str], int] = {}
    for round_ in range(args.rounds):
        tasks = [(file, family) for file in paths for family in FAMILIES]
        random.Random(round_).shuffle(tasks)
        for file, family in tasks:
            # The pair runs back to back, in alternating order: a shared machine's load drifts
            # slower than one pair, so the ratio of a pair holds where seconds do not.
            kinds = ("exact", "area") if round_ % 2 else ("area", "exact")
            pair = {}
            for kind in kinds:
                recipe = recipes[family, kind]
                started = time.perf_counter()
                sampled = sample_frames(paths[file], recipe, DecodeOptions(), LIMITS)
                assemble_views(sampled, recipe)
                pair[kind] = time.perf_counter() - started
                times.setdefault((file, family, kind), []).append(pair[kind])
                sent[file, family, kind] = sampled.frames.nbytes
                views[file, family] = sampled.plan.num_views
            ratios.setdefault((file, family), []).append(pair["exact"] / pair["area"])
        print(f"round {round_ + 1}/{args.rounds} done", flush=True)

    print()
    print(
        "| file | family (exact filter, views) | views | exact s | area s | exact / area "
        "(median of pairs) | sent exact MiB | sent area MiB |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for file in paths:
        for family in FAMILIES:
            exact = statistics.median(times[file, family, "exact"])
            area = statistics.median(times[file, family, "area"])
            print(
                f"| {file} | {family} | {views[file, family]} | {exact:.2f} | {area:.2f} "
                f"| {statistics.median(ratios[file, family]):.2f}x "
                f"| {sent[file, family, 'exact'] / 2**20:.1f} "
                f"| {sent[file, family, 'area'] / 2**20:.1f} |"
            )


def area_twin(recipe: Recipe) -> Recipe:
    """The same views resized in swscale with the area filter, straight from the YUV frame."""
    return Recipe.model_validate(
        {
            **recipe.model_dump(),
            "resize_filter": ResizeFilter.AREA,
            "size_rounding": SizeRounding.MMCV,
            "prescale": None,
        }
    )


if __name__ == "__main__":
    main()
