"""Procedurally generated action videos whose classes need time: one frame cannot tell them
apart, because each class is a way of changing (moving left, rotating, growing, blinking...)
and any single frame of any class looks like any other: a random shape on a random
background.

Every video draws at random: the shape (square, triangle, arrow, L, cross, star), its colour
(kept distinguishable from the background), size, start position, speed, a textured or noisy
background, camera jitter, frame noise and static distractor shapes. `render_video` draws a
whole video; `render_frames` draws only chosen frames (what training needs). Positions and
speeds are in units of the frame's short side, so one scene renders at any resolution.
Pure numpy: the demo video command and the tests need no torch.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

ACTIONS = (
    "moving left",
    "moving right",
    "moving up",
    "moving down",
    "rotating clockwise",
    "rotating counter-clockwise",
    "growing",
    "shrinking",
    "blinking",
    "standing still",
)

#: Motions the demo model never saw, to teach it with `actserve probe` (a linear head on its
#: embeddings). Drawn like the ten above; adding them changed none of those.
NEW_ACTIONS = (
    "moving up-right",
    "moving down-left",
)

#: Each shape is a union of convex polygons in a unit box centred on 0; none has a symmetry
#: that hides the rotation speeds used here (at most 5° a frame, 20° between the frames the
#: demo recipe samples, 4 apart).
SHAPES: dict[str, list[list[tuple[float, float]]]] = {
    "square": [[(-1, -1), (1, -1), (1, 1), (-1, 1)]],
    "triangle": [[(0, -1.1), (1, 0.8), (-1, 0.8)]],
    "arrow": [
        [(-1, -0.35), (0.2, -0.35), (0.2, 0.35), (-1, 0.35)],
        [(0.2, -0.9), (1, 0), (0.2, 0.9)],
    ],
    "l": [[(-1, -1), (-0.4, -1), (-0.4, 1), (-1, 1)], [(-1, 0.4), (1, 0.4), (1, 1), (-1, 1)]],
    "cross": [
        [(-1, -0.3), (1, -0.3), (1, 0.3), (-1, 0.3)],
        [(-0.3, -1), (0.3, -1), (0.3, 1), (-0.3, 1)],
    ],
    "star": [
        [
            (0.38 * math.cos(a), 0.38 * math.sin(a)),
            (math.cos(a + 0.63), math.sin(a + 0.63)),
            (0.38 * math.cos(a + 1.26), 0.38 * math.sin(a + 1.26)),
            (0, 0),
        ]
        for a in np.arange(5) * 2 * math.pi / 5 - math.pi / 2 - 0.63
    ],
}

FPS = 24
NUM_FRAMES = 48
#: The share of a frame's short side the object's centre keeps clear of the edges (at least).
MARGIN = 0.2


@dataclass(frozen=True)
class Scene:
    """Everything random about one video, drawn once; frames are a function of time."""

    action: str
    shape: str
    colour: tuple[float, float, float]
    size: float  # half-width of the shape, in short sides
    start: tuple[float, float]  # centre (x, y) at frame 0, in short sides from the centre
    velocity: tuple[float, float]  # short sides per frame
    angle: float  # degrees at frame 0
    spin: float  # degrees per frame
    growth: float  # size factor per frame
    blink_period: int  # frames per on+off cycle (0: never)
    background: np.ndarray  # (3, 3) base colour + two texture colours, 0..255
    texture: tuple[float, float, float, float]  # kind, frequency, phase, angle
    noise: float  # std of per-frame pixel noise, 0..255
    jitter: float  # camera shake, in short sides
    distractors: tuple[tuple[str, tuple[float, float, float], float, float, float, float], ...]
    seed: int


def make_scene(action: str, rng: np.random.Generator, num_frames: int = NUM_FRAMES) -> Scene:
    if action not in ACTIONS + NEW_ACTIONS:
        known = ", ".join(ACTIONS + NEW_ACTIONS)
        raise ValueError(f"unknown action {action!r}; actions: {known}")
    shape = str(rng.choice(list(SHAPES)))
    size = float(rng.uniform(0.12, 0.18))
    velocity, spin, growth, blink = (0.0, 0.0), 0.0, 1.0, 0
    travel = float(rng.uniform(0.3, 0.45))  # total distance of a moving object
    speed = travel / num_frames
    if action == "moving left":
        velocity = (-speed, 0.0)
    elif action == "moving right":
        velocity = (speed, 0.0)
    elif action == "moving up":
        velocity = (0.0, -speed)
    elif action == "moving down":
        velocity = (0.0, speed)
    elif action == "moving up-right":
        velocity = (speed / math.sqrt(2), -speed / math.sqrt(2))
    elif action == "moving down-left":
        velocity = (-speed / math.sqrt(2), speed / math.sqrt(2))
    elif action.startswith("rotating"):
        spin = float(rng.uniform(2.5, 5.0)) * (1 if action == "rotating clockwise" else -1)
    elif action in ("growing", "shrinking"):
        ratio = float(rng.uniform(2.5, 3.2))
        size = float(rng.uniform(0.07, 0.085)) if action == "growing" else size * 1.2
        growth = ratio ** (1 / num_frames) if action == "growing" else ratio ** (-1 / num_frames)
    elif action == "blinking":
        blink = int(rng.integers(8, 17))
    # Start where the whole path stays inside the centre square, clear of its edges.
    reach = 0.5 - max(MARGIN, 1.3 * size)
    start = []
    for v in velocity:
        low, high = -reach, reach
        if v > 0:
            high = reach - v * num_frames
        elif v < 0:
            low = -reach - v * num_frames
        start.append(float(rng.uniform(low, high)) if high > low else 0.0)
    background = rng.uniform(20, 235, size=3)
    texture_colours = [np.clip(background + rng.normal(0, 25, 3), 0, 255) for _ in range(2)]
    colour = _contrasting(background, rng)
    distractors = tuple(
        (
            str(rng.choice(list(SHAPES))),
            tuple(float(c) for c in _contrasting(background, rng)),
            float(rng.uniform(0.03, 0.06)),
            float(rng.uniform(-0.9, 0.9)),
            float(rng.uniform(-0.45, 0.45)),
            float(rng.uniform(0, 360)),
        )
        for _ in range(int(rng.integers(0, 4)))
    )
    return Scene(
        action=action,
        shape=shape,
        colour=tuple(float(c) for c in colour),
        size=size,
        start=(start[0], start[1]),
        velocity=velocity,
        angle=float(rng.uniform(0, 360)),
        spin=spin,
        growth=growth,
        blink_period=blink,
        background=np.stack([background, *texture_colours]),
        texture=(
            float(rng.integers(0, 3)),
            float(rng.uniform(3, 12)),
            float(rng.uniform(0, 2 * math.pi)),
            float(rng.uniform(0, math.pi)),
        ),
        noise=float(rng.uniform(2, 10)),
        jitter=float(rng.uniform(0, 0.012)),
        distractors=distractors,
        seed=int(rng.integers(2**31)),
    )


def render_frames(scene: Scene, frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """The given frame numbers of a scene, (len(frames), height, width, 3) uint8 RGB."""
    short = min(height, width)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    # Pixel coordinates -> short-side units from the frame centre.
    xs, ys = (xs - width / 2) / short, (ys - height / 2) / short
    background = _background(scene, xs, ys)
    out = np.empty((len(frames), height, width, 3), np.uint8)
    for i, t in enumerate(np.asarray(frames)):
        noise_rng = np.random.default_rng([scene.seed, int(t)])
        dx, dy = noise_rng.normal(0, scene.jitter, 2) if scene.jitter else (0.0, 0.0)
        frame = background.copy()
        for shape, colour, size, cx, cy, angle in scene.distractors:
            _paint(frame, xs + dx, ys + dy, 1 / short, shape, colour, size, (cx, cy), angle)
        visible = not scene.blink_period or (t % scene.blink_period) < scene.blink_period / 2
        if visible:
            centre = (
                scene.start[0] + scene.velocity[0] * t,
                scene.start[1] + scene.velocity[1] * t,
            )
            size = scene.size * scene.growth**t
            angle = scene.angle + scene.spin * t
            _paint(
                frame, xs + dx, ys + dy, 1 / short, scene.shape, scene.colour, size, centre, angle
            )
        frame += noise_rng.normal(0, scene.noise, frame.shape).astype(np.float32)
        out[i] = np.clip(frame, 0, 255).astype(np.uint8)
    return out


def render_video(
    action: str,
    *,
    seed: int,
    height: int = 120,
    width: int = 160,
    num_frames: int = NUM_FRAMES,
) -> np.ndarray:
    """A whole video of `action`, (num_frames, height, width, 3) uint8 RGB at FPS."""
    scene = make_scene(action, np.random.default_rng(seed), num_frames)
    return render_frames(scene, np.arange(num_frames), height, width)


def render_sequence(
    actions: Sequence[str],
    *,
    seconds_each: float,
    seed: int,
    height: int = 120,
    width: int = 160,
    shot_s: float | None = None,
    motion_s: float | None = None,
) -> Iterator[np.ndarray]:
    """A long video of `actions` one after the other, each lasting `seconds_each`, as RGB
    frames at FPS made one at a time (a 10-minute video never sits in memory whole).

    Each action is one scene (one continuous shot), or with `shot_s` a new scene of the same
    action every `shot_s` seconds: a hard cut to another shape on another background, as an
    edited recording cuts between cameras. A scene's motion spans the whole shot (a 30 s
    shot moves 30 times slower than a 1 s one), or with `motion_s` runs at the pace of a
    `motion_s`-second clip and starts over every `motion_s` seconds (the demo model learnt
    2-second motions: `motion_s=2` keeps long shots at that pace).
    """
    frames_each = round(seconds_each * FPS)
    frames_per_shot = frames_each if shot_s is None else max(1, round(shot_s * FPS))
    rng = np.random.default_rng(seed)
    for action in actions:
        for shot_start in range(0, frames_each, frames_per_shot):
            length = min(frames_per_shot, frames_each - shot_start)
            period = length if motion_s is None else max(1, round(motion_s * FPS))
            scene = make_scene(action, rng, min(period, length))
            for start in range(0, length, NUM_FRAMES):  # a block at a time: one background
                times = np.arange(start, min(start + NUM_FRAMES, length)) % period
                yield from render_frames(scene, times, height, width)


def write_video(
    frames: np.ndarray | Iterable[np.ndarray],
    path: str,
    fps: int = FPS,
    options: dict[str, str] | None = None,
) -> None:
    """Encode RGB frames (an array or any iterable of them) by the file's extension: .mp4
    H.264, .webm VP9, .avi MJPEG; `options` go to the encoder after the defaults (e.g.
    `{"g": "24", "bf": "0"}`: a keyframe every second and no B-frames, as cameras send)."""
    import av

    codecs = {
        ".mp4": ("libx264", "yuv420p"),
        ".webm": ("libvpx-vp9", "yuv420p"),
        ".mkv": ("libx264", "yuv420p"),
        ".avi": ("mjpeg", "yuvj420p"),
    }
    suffix = path[path.rfind(".") :].lower()
    if suffix not in codecs:
        raise ValueError(f"write {path!r} as one of {', '.join(codecs)}")
    codec, pix_fmt = codecs[suffix]
    frames = iter(frames)
    first = next(frames)
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = first.shape[:2]
        stream.pix_fmt = pix_fmt
        if codec == "libx264":
            stream.options = {"crf": "20"}
        elif codec == "libvpx-vp9":
            stream.options = {"crf": "30", "b": "0", "deadline": "realtime", "cpu-used": "8"}
        if options:
            stream.options = {**stream.options, **options}
        for frame in itertools.chain([first], frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))


# --------------------------------------------------------------------------- drawing


def _contrasting(background: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A colour at least 90 luma levels away from the background's."""
    luma = np.array([0.299, 0.587, 0.114])
    while True:
        colour = rng.uniform(0, 255, size=3)
        if abs(float((colour - background) @ luma)) > 90:
            return colour


def _background(scene: Scene, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    kind, frequency, phase, angle = scene.texture
    base, first, second = scene.background
    u = xs * math.cos(angle) + ys * math.sin(angle)
    if kind == 0:  # soft stripes
        weight = 0.5 + 0.5 * np.sin(2 * math.pi * frequency * u + phase)
    elif kind == 1:  # checks
        v = -xs * math.sin(angle) + ys * math.cos(angle)
        weight = ((np.floor(u * frequency) + np.floor(v * frequency)) % 2).astype(np.float32)
    else:  # blotches: a smooth random field
        rng = np.random.default_rng(scene.seed)
        grid = rng.uniform(0, 1, (4, 4))
        gy = np.clip((ys - ys.min()) / max(float(np.ptp(ys)), 1e-6) * 3, 0, 3)
        gx = np.clip((xs - xs.min()) / max(float(np.ptp(xs)), 1e-6) * 3, 0, 3)
        y0, x0 = np.minimum(gy.astype(int), 2), np.minimum(gx.astype(int), 2)
        fy, fx = gy - y0, gx - x0
        weight = (
            grid[y0, x0] * (1 - fy) * (1 - fx)
            + grid[y0 + 1, x0] * fy * (1 - fx)
            + grid[y0, x0 + 1] * (1 - fy) * fx
            + grid[y0 + 1, x0 + 1] * fy * fx
        )
    texture = first[None, None] * weight[..., None] + second[None, None] * (1 - weight[..., None])
    return (0.5 * base[None, None] + 0.5 * texture).astype(np.float32)


def _paint(
    frame: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    pixel: float,
    shape: str,
    colour: tuple[float, float, float],
    size: float,
    centre: tuple[float, float],
    angle: float,
) -> None:
    """Blend an anti-aliased shape into `frame` (in place); `pixel` is one pixel in short-side
    units. Only the shape's bounding box is touched."""
    reach = size * 1.5 + pixel  # every shape fits in a circle of radius √2 · size
    columns = np.flatnonzero(np.abs(xs[0] - centre[0]) <= reach)
    rows = np.flatnonzero(np.abs(ys[:, 0] - centre[1]) <= reach)
    if not len(columns) or not len(rows):
        return
    box = (slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1))
    frame, xs, ys = frame[box], xs[box], ys[box]
    theta = math.radians(angle)
    cos, sin = math.cos(theta), math.sin(theta)
    # Pixel -> shape coordinates (rotate back, then scale to the unit box).
    px, py = xs - centre[0], ys - centre[1]
    u = (px * cos + py * sin) / size
    v = (-px * sin + py * cos) / size
    coverage = np.zeros(xs.shape, np.float32)
    for polygon in SHAPES[shape]:
        coverage = np.maximum(coverage, _convex_coverage(u, v, polygon, pixel / size))
    frame += (np.asarray(colour, np.float32) - frame) * coverage[..., None]


def _convex_coverage(
    u: np.ndarray, v: np.ndarray, polygon: list[tuple[float, float]], pixel: float
) -> np.ndarray:
    """Approximate area coverage of a convex polygon: the signed distance to its nearest
    edge, ramped over one pixel."""
    points = np.asarray(polygon, np.float32)
    inside = np.full(u.shape, np.inf, np.float32)
    area = float(
        np.sum(points[:, 0] * np.roll(points[:, 1], -1) - np.roll(points[:, 0], -1) * points[:, 1])
    )
    orientation = 1.0 if area > 0 else -1.0
    for (x0, y0), (x1, y1) in zip(points, np.roll(points, -1, axis=0), strict=True):
        ex, ey = x1 - x0, y1 - y0
        length = math.hypot(ex, ey) or 1.0
        distance = orientation * (ex * (v - y0) - ey * (u - x0)) / length
        inside = np.minimum(inside, distance)
    return np.clip(inside / pixel + 0.5, 0, 1)
