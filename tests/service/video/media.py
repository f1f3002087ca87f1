"""Test media written with PyAV: frames that carry their own index, gradients, damaged files.

A frame's index is painted as one flat colour, 8 levels per channel 32 apart (512 distinct
frames): flat colour survives every codec, resize, crop and rotation, so `frame_ids` reads
the index back from any view of the frame.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from model_store.spec import Recipe

Painter = Callable[[int, int, int], np.ndarray]  # (index, height, width) -> (H, W, 3) uint8


def frame_colour(index: int) -> np.ndarray:
    """The RGB colour that encodes frame `index` (0 ≤ index < 512)."""
    digits = (index % 8, index // 8 % 8, index // 64 % 8)
    return np.array([d * 32 + 16 for d in digits], dtype=np.uint8)


def paint_index(index: int, height: int, width: int) -> np.ndarray:
    return np.broadcast_to(frame_colour(index), (height, width, 3)).copy()


def paint_gradient(index: int, height: int, width: int) -> np.ndarray:
    """R = 2x + 10 and G = 3y + 10 (exact after a 2:1 box resize), B = the frame index."""
    ys, xs = np.mgrid[0:height, 0:width]
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[..., 0] = 2 * xs + 10
    frame[..., 1] = 3 * ys + 10
    frame[..., 2] = index % 256
    return frame


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random grey texture (blobs a few pixels wide): what optical flow can track."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((height // 4 + 2, width // 4 + 2))
    # Bilinear upsampling by 4 of a random grid: smooth, no straight edges, no periodicity.
    ys, xs = np.linspace(0, coarse.shape[0] - 2, height), np.linspace(0, coarse.shape[1] - 2, width)
    y0, x0 = ys.astype(int)[:, None], xs.astype(int)[None, :]
    fy, fx = (ys - ys.astype(int))[:, None], (xs - xs.astype(int))[None, :]
    smooth = (
        coarse[y0, x0] * (1 - fy) * (1 - fx)
        + coarse[y0 + 1, x0] * fy * (1 - fx)
        + coarse[y0, x0 + 1] * (1 - fy) * fx
        + coarse[y0 + 1, x0 + 1] * fy * fx
    )
    return (40 + 175 * smooth).astype(np.uint8)


def moving_texture(dx: int, dy: int, *, seed: int = 0, margin: int = 128) -> Painter:
    """Frames of a textured canvas that moves `dx`, `dy` pixels per frame (right, down > 0)."""
    cache: dict[tuple[int, int], np.ndarray] = {}

    def paint(index: int, height: int, width: int) -> np.ndarray:
        if (height, width) not in cache:
            cache[height, width] = texture(height + 2 * margin, width + 2 * margin, seed)
        canvas = cache[height, width]
        top, left = margin - dy * index, margin - dx * index
        if not (0 <= top <= 2 * margin and 0 <= left <= 2 * margin):
            raise ValueError(f"frame {index} moves past the {margin}-pixel margin")
        grey = canvas[top : top + height, left : left + width]
        return np.repeat(grey[..., None], 3, axis=-1)

    return paint


def paint_texture(index: int, height: int, width: int) -> np.ndarray:
    """Noise panned 3 px a frame under a box moving 2 px a frame: motion an encoder predicts
    from neighbouring frames (B-frames that are and are not references), unlike a flat colour."""
    rng = np.random.default_rng(7)
    texture = rng.integers(0, 256, size=(height, width + 3 * 512, 3), dtype=np.uint8)
    frame = texture[:, 3 * index : 3 * index + width].copy()
    top, left = (2 * index) % max(1, height - 8), (2 * index) % max(1, width - 8)
    frame[top : top + 8, left : left + 8] = (250, 40, 40)
    return frame


def frame_ids(frames: np.ndarray) -> np.ndarray:
    """Read the painted indices back: (..., H, W, 3) uint8 frames → (...) ints."""
    colour = frames.reshape(*frames.shape[:-3], -1, 3).mean(axis=-2)
    digits = np.clip(np.round((colour - 16) / 32), 0, 7).astype(np.int64)
    return digits[..., 0] + 8 * digits[..., 1] + 64 * digits[..., 2]


def view_ids(views: np.ndarray) -> np.ndarray:
    """Indices of (V, C, T, H, W) views made with an identity recipe (pixels 0..255, RGB)."""
    return frame_ids(np.round(views).astype(np.uint8).transpose(0, 2, 3, 4, 1))


def write_video(
    path: Path,
    *,
    codec: str = "libx264",
    num_frames: int = 96,
    fps: int = 30,
    size: tuple[int, int] = (64, 48),
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    pts_ms: Sequence[int] | None = None,
    rotation: int = 0,
    painter: Painter = paint_index,
    container_options: dict[str, str] | None = None,
    audio: bool = False,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Encode `num_frames` painted frames; `pts_ms` gives variable-rate timestamps."""
    width, height = size
    if pts_ms is not None:
        num_frames = len(pts_ms)
    with av.open(os.fspath(path), "w", options=container_options or {}) as container:
        container.metadata.update(metadata or {})
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if codec in ("mpeg4", "mjpeg"):
            stream.bit_rate = 8_000_000  # the default rate smears a flat colour per frame
        if options:
            stream.options = options
        if rotation:
            stream.set_display_rotation(rotation)
        if pts_ms is not None:
            stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        sound = container.add_stream("aac", rate=48000) if audio else None
        for index in range(num_frames):
            frame = av.VideoFrame.from_ndarray(painter(index, height, width), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[index], Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if sound is not None:
            _mux_silence(container, sound, seconds=num_frames / fps)
    return path


def write_audio(path: Path, codec: str) -> Path:
    with av.open(os.fspath(path), "w") as container:
        _mux_silence(container, container.add_stream(codec, rate=48000), seconds=1.0)
    return path


def write_image(path: Path, codec: str = "png") -> Path:
    pix_fmt = "rgb24" if codec == "png" else "yuvj420p"
    with av.open(os.fspath(path), "w", format="image2") as container:
        stream = container.add_stream(codec)
        stream.width, stream.height, stream.pix_fmt = 32, 32, pix_fmt
        frame = av.VideoFrame.from_ndarray(paint_index(5, 32, 32), format="rgb24")
        container.mux(stream.encode(frame.reformat(format=pix_fmt)))
        container.mux(stream.encode(None))
    return path


def cut_file(source: Path, target: Path, fraction: float, after: bytes = b"") -> Path:
    """Keep `fraction` of the bytes that follow the first `after` marker (of all bytes)."""
    data = source.read_bytes()
    start = data.index(after) if after else 0
    target.write_bytes(data[: start + int((len(data) - start) * fraction)])
    return target


def replace_bytes(source: Path, target: Path, old: bytes, new: bytes) -> Path:
    """The file with every `old` (which must occur) replaced by `new`."""
    data = source.read_bytes()
    assert old in data, f"{old!r} not in {source.name}"
    target.write_bytes(data.replace(old, new))
    return target


def drop_moov(source: Path, target: Path) -> Path:
    """An MP4 whose index atom (moov, written last) is gone: all media data, no index."""
    data = source.read_bytes()
    target.write_bytes(data[: data.rindex(b"moov") - 4])
    return target


def blank_packets(source: Path, target: Path, packets: Sequence[int] | None = None) -> Path:
    """Overwrite the payload of the given video packets (all when None) with zeros."""
    with av.open(os.fspath(source)) as container:
        stream = container.streams.video[0]
        spans = [(p.pos, p.size) for p in container.demux(stream) if p.size]
    data = bytearray(source.read_bytes())
    for number in range(len(spans)) if packets is None else packets:
        position, size = spans[number]
        data[position : position + size] = bytes(size)
    target.write_bytes(bytes(data))
    return target


def _mux_silence(container: av.container.OutputContainer, stream, seconds: float) -> None:
    samples = 960 if "opus" in stream.codec_context.name else 1024
    for block in range(int(seconds * 48000 / samples)):
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, samples), dtype=np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate, frame.pts = 48000, block * samples
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def raw_recipe(**fields: object) -> Recipe:
    """A recipe that keeps the pixels as decoded (0-255, no normalisation) in 32-px centre
    crops of clips of 4 frames 2 apart, two clips; `fields` change any of it."""
    plain = dict(
        clip_len=4,
        frame_interval=2,
        num_clips=2,
        num_crops=1,
        short_side=32,
        crop_size=32,
        pixel_scale=255.0,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
    )
    return Recipe(**{**plain, **fields})
