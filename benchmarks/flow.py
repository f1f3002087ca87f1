"""TV-L1 flow: what one flow view costs, and OpenCV's solver beside scikit-image's.

    python benchmarks/flow.py               # 3 rounds, P3D geometry (16 fields at 160×160)
    python benchmarks/flow.py --rounds 5 --threads 2

Frames are a smooth random texture moved by a known (dx, dy) per frame, so the endpoint
error (mean |estimated - true| displacement, px, 16 px away from the borders) says how well
each solver tracks it. Each round runs every method in a shuffled order; the table shows the
median CPU seconds per flow field (process time: on a shared box it moves far less than the
wall clock, which is shown beside it), the ratio to OpenCV's, the endpoint error, and the
cost of one flow view (`clip_len` fields: grey conversion, solve, quantise) and of P3D's
10-view test protocol.

- opencv: `cv2.optflow.DualTVL1OpticalFlow` at its defaults (mmaction2's extraction tool);
  `--threads` sets OpenCV's thread count (the decode workers use 1 each).
- skimage: `skimage.registration.optical_flow_tvl1` at its defaults (pure numpy/scipy), when
  installed (`pip install 'actserve[bench]'`).
- opencv @ frame: OpenCV on the whole short-side-resized frame (182×242 for P3D) rather than
  the 160 crop, what an extractor that crops after the flow pays.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable

import numpy as np

from service.video.flow import flow_stack, require_opencv, tvl1_flow

SHIFT = (2, -1)  # px per frame, x (right) and y (down)
CLIP_LEN, NUM_CLIPS = 16, 10
CROP, FRAME = (160, 160), (182, 242)


def _texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    cv2 = require_opencv()
    noise = np.random.default_rng(seed).random((height, width)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 2.5)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (30 + 195 * smooth).astype(np.uint8)


def _pair(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    height, width = size
    dx, dy = SHIFT
    canvas = _texture(height + 40, width + 40)
    first = canvas[20 : 20 + height, 20 : 20 + width]
    second = canvas[20 - dy : 20 - dy + height, 20 - dx : 20 - dx + width]
    return np.ascontiguousarray(first), np.ascontiguousarray(second)


def _skimage_flow(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    from skimage.registration import optical_flow_tvl1

    v, u = optical_flow_tvl1(first, second)  # rows (y), then columns (x)
    return np.stack([u, v], axis=-1)


def _endpoint_error(field: np.ndarray, border: int = 16) -> float:
    inner = field[border:-border, border:-border]
    return float(np.hypot(inner[..., 0] - SHIFT[0], inner[..., 1] - SHIFT[1]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="OpenCV threads (0 = all)")
    args = parser.parse_args()
    cv2 = require_opencv()
    cv2.setNumThreads(args.threads)

    crop, frame = _pair(CROP), _pair(FRAME)
    methods: dict[str, Callable[[], np.ndarray]] = {
        "opencv": lambda: tvl1_flow(*crop),
        "opencv @ frame": lambda: tvl1_flow(*frame),
    }
    try:
        import skimage  # noqa: F401

        methods["skimage"] = lambda: _skimage_flow(*crop)
    except ImportError:
        print("skimage not installed: its row is left out (pip install 'actserve[bench]')")

    canvas = _texture(CROP[0] + 64, CROP[1] + 64)
    clip = np.stack(
        [canvas[32 + i : 32 + i + CROP[0], 32 - i : 32 - i + CROP[1]] for i in range(CLIP_LEN + 1)]
    )
    cpu: dict[str, list[float]] = {name: [] for name in [*methods, "view"]}
    wall: dict[str, list[float]] = {name: [] for name in cpu}
    errors: dict[str, float] = {}
    for _ in range(args.rounds):
        order = list(cpu)
        random.shuffle(order)
        for name in order:
            started, started_cpu = time.perf_counter(), time.process_time()
            if name == "view":
                flow_stack(clip)
            else:
                errors[name] = _endpoint_error(methods[name]())
            cpu[name].append(time.process_time() - started_cpu)
            wall[name].append(time.perf_counter() - started)

    base = statistics.median(cpu["opencv"])
    print(
        f"OpenCV {cv2.__version__}, {args.threads or cv2.getNumThreads()} thread(s), "
        f"{args.rounds} rounds, true motion {SHIFT} px/frame, load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(f"{'method':<16} {'CPU s / field':>13} {'wall s':>7} {'÷ opencv':>9} {'EPE px':>7}")
    for name in methods:
        seconds = statistics.median(cpu[name])
        print(
            f"{name:<16} {seconds:>13.3f} {statistics.median(wall[name]):>7.3f} "
            f"{seconds / base:>9.2f} {errors[name]:>7.3f}"
        )
    view = statistics.median(cpu["view"])
    print(
        f"one flow view ({CLIP_LEN} fields at {CROP[0]}×{CROP[1]}): {view:.2f} CPU s "
        f"(wall {statistics.median(wall['view']):.2f} s) = {view / base:.1f} × one field; "
        f"P3D's {NUM_CLIPS}-view protocol: {view * NUM_CLIPS:.1f} CPU s"
    )


if __name__ == "__main__":
    main()
