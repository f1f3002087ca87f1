"""What finding shots costs next to the windows' own decode, in one process, side by side.

    python benchmarks/shots.py                       # 1-minute recordings, 160x120 and 640x360
    python benchmarks/shots.py --sizes 1280x720 --minutes 2

For each recording (`benchmarks/segments.py`'s kinds: `clean`, one shot per action; `shots`,
a cut every 2 s) and size, the CPU seconds of decoding every window of the demo model's plan,
chunk by chunk as the service does: without shots, with shots (thumbnails of the frames the
windows decode, plus the stretches a seek skips), and a separate whole-video scan (what the
service did before). Ratios are against the windows' decode alone.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def cpu(work, *args) -> float:
    began = time.process_time()
    work(*args)
    return time.process_time() - began


def sample_windows(path, recipe, options, limits, bounds, shots) -> None:
    """Every window of the plan, a chunk at a time, as the service decodes them."""
    from service.video import sample_streams

    for chunk in bounds:
        wanted = options.model_copy(update={"shots": shots})
        sample_streams(path, (recipe,), wanted, limits, chunk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--kinds", default="clean,shots")
    parser.add_argument("--sizes", default="160x120,640x360", help="WxH,WxH")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from segments import make_recording

    from model_store import ModelStore
    from model_store.spec import Profile
    from service.settings import BUNDLED_STORE
    from service.video import DecodeOptions, VideoLimits, plan_windows
    from service.video.shots import ShotRule, detect_shots
    from service.windows import chunk_bounds

    store = ModelStore(BUNDLED_STORE)
    recipe = store.resolve(store.list_models()[0]).spec.recipe
    limits = VideoLimits(max_duration_s=24 * 3600)
    options = DecodeOptions(profile=Profile.FAST, windows=True, decoder_threads=1)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, load {os.getloadavg()[0]:.1f}")
    print("| recording | windows' decode | + shots, riding along | a separate scan |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            width, height = (int(v) for v in size.split("x"))
            for kind in args.kinds.split(","):
                path = Path(tmp) / f"{kind}-{size}.mp4"
                make_recording(kind, path, args.minutes, (width, height))  # type: ignore[arg-type]
                plan = plan_windows(path, recipe, options, limits)
                bounds = chunk_bounds(plan, recipe, limits.max_view_bytes)

                rows = []
                for _ in range(args.rounds):  # interleaved; the lowest of each kept
                    rows.append(
                        (
                            cpu(sample_windows, path, recipe, options, limits, bounds, None),
                            cpu(sample_windows, path, recipe, options, limits, bounds, ShotRule()),
                            cpu(detect_shots, path, limits, ShotRule()),
                        )
                    )
                alone, riding, separate = (min(column) for column in zip(*rows, strict=True))
                print(
                    f"| {kind} {size}, {args.minutes:g} min | {alone:.2f} s | "
                    f"+{(riding - alone) / alone:.2f}x | +{separate / alone:.2f}x |"
                )


if __name__ == "__main__":
    main()
