"""Peak memory of `per_clip` over long videos: is it bounded by the chunk, not the video?

    python benchmarks/long_video.py                     # 60 s and 600 s, the demo model
    python benchmarks/long_video.py --seconds 60,300,600 --size 320x240

Each length gets a synthetic video (the demo's ten motions in turn, 10 s each, H.264) and a
fresh Python process that starts the service on 127.0.0.1 (`service.embedded`), posts the
video once to `/classify?per_clip=true&segments=true`, stops the service and reports its
peak resident memory: the service process's own (`ru_maxrss`) and the largest of its decode
workers' (`RUSAGE_CHILDREN`, read once the workers have exited). One run, side by side; the
ratio of the long video's peak to the short one's is the point.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SECONDS_EACH = 10.0


def make_video(path: Path, seconds: float, size: tuple[int, int]) -> None:
    from actserve.demo.synthetic import ACTIONS, render_sequence, write_video

    count = max(1, round(seconds / SECONDS_EACH))
    actions = [ACTIONS[i % len(ACTIONS)] for i in range(count)]
    width, height = size
    frames = render_sequence(actions, seconds_each=SECONDS_EACH, seed=1, height=height, width=width)
    write_video(frames, str(path))


def slim_r3d_store(root: Path) -> Path:
    """A store with a slim R3D (random weights) that takes R3D-18's Kinetics input: 16
    frames, short side 128, 3 crops of 112 (2.4 MB of float32 per view), so that memory
    follows the views, not the network."""
    import torch

    from backbones import create_model
    from exporters import export_to_store
    from model_store import ModelStore, Recipe

    recipe = Recipe(
        clip_len=16,
        frame_interval=1,
        num_clips=1,
        num_crops=3,
        short_side=128,
        crop_size=112,
        pixel_scale=1.0,
        mean=(0.43, 0.4, 0.37),
        std=(0.23, 0.22, 0.22),
    )
    torch.manual_seed(0)
    model = create_model(
        "r3d_10", num_classes=10, recipe=recipe, widths=(8, 16, 32, 64), stem_width=8
    )
    store = ModelStore(root)
    export_to_store(model, model.spec, store, trained=False, name="slim-r3d", alias="stable")
    store.set_default_model("slim-r3d")
    return root


def serve_one(path: Path, workers: int, store: Path | None) -> dict:
    """In the measured process: the service, one long-video request, its peak memory."""
    import httpx

    from service.embedded import EmbeddedServer
    from service.settings import Settings

    values = dict(decode_workers=workers, request_timeout_s=1800, decode_timeout_s=1800)
    settings = Settings(**values, **({"store": store} if store is not None else {}))
    params = {"per_clip": "true", "segments": "true", "top_k": 1}
    with EmbeddedServer(settings) as server, httpx.Client(base_url=server.url) as client:
        started = time.perf_counter()
        with path.open("rb") as f:
            response = client.post(
                "/classify", params=params, files={"video": (path.name, f)}, timeout=1800
            )
        seconds = time.perf_counter() - started
    body = response.json()
    if response.status_code != 200:
        return {"status": response.status_code, "error": body}
    return {
        "status": 200,
        "seconds": seconds,
        "windows": len(body["clips"]),
        "segments": len(body.get("segments") or []),
        "service_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", default="60,600", help="video lengths, comma-separated")
    parser.add_argument("--size", default="320x240", help="frame size WxH")
    parser.add_argument("--workers", type=int, default=2, help="decode workers")
    parser.add_argument("--keep", type=Path, help="make the videos here once and reuse them")
    parser.add_argument(
        "--slim-r3d", action="store_true", help="serve a slim R3D with R3D-18's input recipe"
    )
    parser.add_argument(
        "--code", type=Path, help="run the service from this checkout (e.g. an older one)"
    )
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--serve-one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_one:
        print(json.dumps(serve_one(args.serve_one, args.workers, args.store)))
        return
    lengths = [float(s) for s in args.seconds.split(",")]
    if max(lengths) > 3600:
        parser.error("bounded: videos of at most an hour")
    size = tuple(int(v) for v in args.size.split("x"))
    results = {}
    with tempfile.TemporaryDirectory(prefix="actserve-long-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        store = slim_r3d_store(Path(tmp) / "store") if args.slim_r3d else None
        environment = dict(os.environ)
        if args.code is not None:
            environment["PYTHONPATH"] = str(args.code.resolve())
        for seconds in lengths:
            path = folder / f"{seconds:g}s-{args.size}.mp4"
            if not path.exists():
                made = time.perf_counter()
                make_video(path, seconds, size)
                print(
                    f"made {path.name} ({path.stat().st_size / 2**20:.1f} MiB) in "
                    f"{time.perf_counter() - made:.0f} s",
                    flush=True,
                )
            command = [sys.executable, __file__, "--serve-one", str(path)]
            command += ["--workers", str(args.workers)]
            command += ["--store", str(store)] if store is not None else []
            done = subprocess.run(
                command, capture_output=True, text=True, check=True, env=environment
            )
            results[seconds] = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"\n{'video':>7} {'windows':>8} {'segments':>9} {'request s':>10} "
        f"{'service MiB':>12} {'worker MiB':>11}"
    )
    for seconds, r in results.items():
        if r["status"] != 200:
            print(f"{seconds:6g}s  {r['status']}: {r['error']}")
            continue
        print(
            f"{seconds:6g}s {r['windows']:8d} {r['segments']:9d} {r['seconds']:10.1f} "
            f"{r['service_mb']:12.0f} {r['worker_mb']:11.0f}"
        )
    ok = [r for r in results.values() if r["status"] == 200]
    if len(ok) >= 2:
        first, last = ok[0], ok[-1]
        print(
            f"\nlongest ÷ shortest: service peak {last['service_mb'] / first['service_mb']:.2f}x, "
            f"worker peak {last['worker_mb'] / first['worker_mb']:.2f}x, "
            f"windows {last['windows'] / first['windows']:.1f}x"
        )


if __name__ == "__main__":
    main()
