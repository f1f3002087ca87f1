"""Segments and shots on recordings with known truth: one segment per action?

    python benchmarks/segments.py                  # 5-minute recordings, the demo model
    python benchmarks/segments.py --minutes 20 --kinds shots

Each kind of recording strings the demo's ten motions together, 30 s each, in turn:

    clean    one continuous shot per action (its motion at the demo's 2-second pace, looped):
             the only camera cuts are the action changes
    shots    a new shot of the same action every 2 s (a hard cut to another shape on another
             background), as an edited recording cuts between cameras
    scenes   the long-video generator's own: ten-second scenes (benchmarks/long_video.py),
             their motion spread over the whole scene (slower than the demo learnt)

Every recording goes once through a real service (`/classify?per_clip=true&shots=true`); the
windows it returns are merged into segments by the raw rule (window by window, as before) and
by the defaults (`service.segments.SegmentRule`), side by side. Reported per recording: the
windows' accuracy (a window is right when its top-1 is the action at its middle), segments
against the true count, the share of each action's time covered by a segment of its label
(mean and worst action), the shot boundaries found against the true cuts (within one frame),
and what the shot scan cost against the labelling (CPU seconds of the service's processes with
shots and without, one request each).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

SECONDS_EACH = 30.0
CUT_EVERY_S = 2.0


def make_recording(kind: str, path: Path, minutes: float, size: tuple[int, int]) -> list[str]:
    from actserve.demo.synthetic import ACTIONS, render_sequence, write_video

    each = 10.0 if kind == "scenes" else SECONDS_EACH
    actions = [ACTIONS[i % len(ACTIONS)] for i in range(max(1, round(minutes * 60 / each)))]
    width, height = size
    frames = render_sequence(
        actions,
        seconds_each=each,
        seed=7,
        height=height,
        width=width,
        shot_s=CUT_EVERY_S if kind == "shots" else None,
        motion_s=2.0 if kind == "clean" else None,
    )
    write_video(frames, str(path))
    return actions


def true_cuts(kind: str, actions: list[str]) -> np.ndarray:
    each = 10.0 if kind == "scenes" else SECONDS_EACH
    total = len(actions) * each
    step = CUT_EVERY_S if kind == "shots" else each
    return np.arange(step, total - 1e-6, step)


def cpu_seconds() -> float:
    """User + system CPU of this process and every process below it (the decode workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        used[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    mine, total = {os.getpid()}, 0.0
    changed = True
    while changed:
        changed = False
        for pid, parent in parents.items():
            if parent in mine and pid not in mine:
                mine.add(pid)
                changed = True
    for pid in mine:
        total += used.get(pid, 0.0)
    return total


def classify(url: str, path: Path, **params: str) -> tuple[dict, float]:
    import httpx

    before = cpu_seconds()
    with path.open("rb") as file:
        response = httpx.post(
            f"{url}/classify",
            params={"per_clip": "true", "top_k": "100", **params},
            files={"video": file},
            timeout=1800,
        )
    response.raise_for_status()
    return response.json(), cpu_seconds() - before


def evaluate(answer: dict, actions: list[str], each: float) -> dict[str, object]:
    from service.segments import SegmentRule, find_segments

    labels: dict[str, int] = {}
    clips = answer["clips"]
    width = max(entry["index"] for clip in clips for entry in clip["top_k"]) + 1
    probabilities = np.zeros((len(clips), width))
    for row, clip in enumerate(clips):
        for entry in clip["top_k"]:
            probabilities[row, entry["index"]] = entry["score"]
            labels[entry["label"]] = entry["index"]
    times = [(clip["start_s"], clip["end_s"]) for clip in clips]
    truth = [labels[action] for action in actions]
    middle = [min(int((a + b) / 2 // each), len(truth) - 1) for a, b in times]
    accuracy = float(np.mean(probabilities.argmax(1) == np.asarray(truth)[middle]))
    cuts = [shot["start_s"] for shot in answer["shots"][1:]]
    out: dict[str, object] = {"windows": len(clips), "window_accuracy": accuracy}
    for name, rule in (("raw", SegmentRule.raw()), ("default", SegmentRule())):
        found = find_segments(probabilities, times, rule, cuts)
        covered = []
        for k, label in enumerate(truth):
            start, end = k * each, (k + 1) * each
            mine = [s for s in found if s.index == label]
            inside = sum(max(0.0, min(s.end_s, end) - max(s.start_s, start)) for s in mine)
            covered.append(inside / each)
        out[name] = {
            "segments": len(found),
            "coverage_mean": float(np.mean(covered)),
            "coverage_worst": float(np.min(covered)),
        }
    return out


def shot_accuracy(answer: dict, truth: np.ndarray, fps: float) -> dict[str, float]:
    found = np.asarray([shot["start_s"] for shot in answer["shots"][1:]])
    if not len(found):
        return {"found": 0, "recall": 0.0, "precision": 1.0}
    hit = [np.abs(found - t).min() <= 1 / fps + 1e-6 for t in truth]
    right = [np.abs(truth - f).min() <= 1 / fps + 1e-6 for f in found] if len(truth) else []
    return {
        "found": len(found),
        "true": len(truth),
        "recall": float(np.mean(hit)) if len(truth) else 1.0,
        "precision": float(np.mean(right)) if len(right) else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--kinds", default="clean,shots,scenes")
    parser.add_argument("--size", default="160x120", help="WxH of the recordings")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))

    from actserve.demo.synthetic import FPS
    from service.embedded import EmbeddedServer
    from service.settings import Settings

    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, load {os.getloadavg()[0]:.1f}, {args.minutes} min")
    results = {}
    with tempfile.TemporaryDirectory() as tmp, EmbeddedServer(Settings(decode_nice=0)) as server:
        for kind in args.kinds.split(","):
            path = Path(tmp) / f"{kind}.mp4"
            actions = make_recording(kind, path, args.minutes, size)  # type: ignore[arg-type]
            each = 10.0 if kind == "scenes" else SECONDS_EACH
            answer, with_shots = classify(server.url, path, shots="true")
            _, without = classify(server.url, path)
            row = evaluate(answer, actions, each)
            row["shots"] = shot_accuracy(answer, true_cuts(kind, actions), FPS)
            row["cpu_s"] = {"with_shots": with_shots, "without": without}
            row["shot_cost"] = (with_shots - without) / without
            results[kind] = row
            raw, new = row["raw"], row["default"]
            print(
                f"{kind:7s} {len(actions)} actions, {row['windows']} windows "
                f"(accuracy {row['window_accuracy']:.2f}) | segments raw {raw['segments']} -> "
                f"default {new['segments']} | coverage raw {raw['coverage_mean']:.3f} -> default "
                f"{new['coverage_mean']:.3f} (worst {new['coverage_worst']:.3f}) | shots "
                f"{row['shots']['found']} found of {len(true_cuts(kind, actions))} cuts, recall "
                f"{row['shots']['recall']:.3f} precision {row['shots']['precision']:.3f} | "
                f"shot scan {row['shot_cost']:.2f}x the labelling CPU"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
