"""One session-wide library of generated test videos, each written on first use."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.service.video import media

#: 0–3 s at 30 fps, 3–6 s at 5 fps, 6–10 s at 60 fps: 345 frames whose index ≠ time × fps.
VFR_PTS_MS = (
    [round(i * 1000 / 30) for i in range(90)]
    + [3000 + 200 * i for i in range(15)]
    + [6000 + round(i * 1000 / 60) for i in range(240)]
)
#: libx264 on yuv444p at qp 0: only the RGB↔YUV rounding remains.
LOSSLESS = {"qp": "0"}
#: libx264 with 3 B-frames (the middle one a reference: b-pyramid), keyframes 50 apart.
TEXTURED = {"bf": "3", "b-pyramid": "normal", "g": "50", "sc_threshold": "0"}
TEXTURED_HEVC = {"x265-params": "bframes=3:keyint=30:log-level=error"}
#: The Matroska cluster element: media data starts at the first one.
CLUSTER = bytes.fromhex("1f43b675")

Builder = Callable[[Path, "MediaLibrary"], Path]

BUILDERS: dict[str, Builder] = {
    # the frame-index videos of the proof, one per codec/container pair
    "h264.mp4": lambda p, _: media.write_video(p),
    "h264.mkv": lambda p, _: media.write_video(p),
    "vp9.webm": lambda p, _: media.write_video(p, codec="libvpx-vp9"),
    "mpeg4.avi": lambda p, _: media.write_video(
        p, codec="mpeg4", options={"bf": "2", "g": "12", "sc_threshold": "1000000000"}
    ),
    "mjpeg.avi": lambda p, _: media.write_video(p, codec="mjpeg", pix_fmt="yuvj420p"),
    # MPEG-4 Part 2 in MP4: the header probe leaves its frame size at 0x0
    "mpeg4.mp4": lambda p, _: media.write_video(p, codec="mpeg4"),
    "wide_mpeg4.mp4": lambda p, _: media.write_video(
        p, codec="mpeg4", size=(256, 16), num_frames=4
    ),
    # H.264 with B-frames in AVI: packets carry decode order as timestamps
    "h264_bframes.avi": lambda p, _: media.write_video(p),
    # timing and geometry
    "vfr.mp4": lambda p, _: media.write_video(p, pts_ms=VFR_PTS_MS),
    "vfr.mkv": lambda p, _: media.write_video(p, pts_ms=VFR_PTS_MS),
    "gradient.mp4": lambda p, _: media.write_video(
        p, size=(96, 64), pix_fmt="yuv444p", options=LOSSLESS, painter=media.paint_gradient
    ),
    "rotated.mp4": lambda p, _: media.write_video(
        p,
        size=(64, 48),
        pix_fmt="yuv444p",
        options=LOSSLESS,
        rotation=90,
        painter=media.paint_gradient,
        num_frames=8,
    ),
    "one_frame.mp4": lambda p, _: media.write_video(p, num_frames=1),
    # one keyframe for 300 frames: every sampled frame costs a decode from the start
    "one_gop.mp4": lambda p, _: media.write_video(
        p, num_frames=300, options={"g": "1000", "sc_threshold": "0", "bf": "0"}
    ),
    # a textured canvas moving 2 px right and 1 px up per frame: optical flow (2, -1)
    "motion.mp4": lambda p, _: media.write_video(
        p, size=(96, 80), num_frames=24, pix_fmt="yuv444p", painter=media.moving_texture(2, -1)
    ),
    # moving texture with B-frames (references and not) in long GOPs: what skipping and the
    # container index must decode exactly
    "textured.mp4": lambda p, _: media.write_video(
        p, painter=media.paint_texture, num_frames=120, options=TEXTURED
    ),
    "textured.mkv": lambda p, _: media.write_video(
        p, painter=media.paint_texture, num_frames=120, options=TEXTURED
    ),
    "textured_hevc.mp4": lambda p, _: media.write_video(
        p, codec="libx265", painter=media.paint_texture, num_frames=60, options=TEXTURED_HEVC
    ),
    "odd_h264.mp4": lambda p, _: media.write_video(p, size=(321, 241), pix_fmt="yuv444p"),
    "odd_mjpeg.avi": lambda p, _: media.write_video(
        p, codec="mjpeg", size=(321, 241), pix_fmt="yuvj420p"
    ),
    "odd_mpeg4.avi": lambda p, _: media.write_video(p, codec="mpeg4", size=(321, 241)),
    "with_audio.mp4": lambda p, _: media.write_video(p, audio=True),
    "wide.mp4": lambda p, _: media.write_video(p, size=(256, 16), num_frames=4),
    "bomb.avi": lambda p, _: media.write_video(
        p, codec="mjpeg", pix_fmt="yuvj420p", size=(4096, 4096), num_frames=2
    ),
    # reference protocols: intra-only MJPEG, odd sizes, a textured pan (49 frames: 3 × 16 + 1)
    "protocol.avi": lambda p, _: media.write_video(
        p,
        codec="mjpeg",
        pix_fmt="yuvj420p",
        size=(96, 70),
        num_frames=49,
        painter=media.paint_texture,
    ),
    # full-range (yuvj) MJPEG with flat colours, for the RGB/BGR conversion
    "flat_yuvj.avi": lambda p, _: media.write_video(
        p, codec="mjpeg", pix_fmt="yuvj420p", size=(96, 64), num_frames=8
    ),
    # P3D's protocol on the inputs that once broke it (issue 27): a VP9 640×360 stored turned
    # 90° (the Caffe stretch to 182×242 applies to the displayed frame) and a full-range
    # MJPEG AVI (the BGR route's colour range and matrix against FFmpeg's conversion)
    "p3d_rotated_vp9.webm": lambda p, _: media.write_video(
        p,
        codec="libvpx-vp9",
        size=(640, 360),
        rotation=90,
        num_frames=12,
        painter=media.paint_texture,
        options={"deadline": "realtime", "cpu-used": "8"},
    ),
    "p3d_full_range.avi": lambda p, _: media.write_video(
        p,
        codec="mjpeg",
        pix_fmt="yuvj420p",
        size=(640, 360),
        num_frames=12,
        painter=media.paint_texture,
    ),
    # damaged
    "faststart.mp4": lambda p, _: media.write_video(p, container_options={"movflags": "faststart"}),
    "faststart_cut.mp4": lambda p, lib: media.cut_file(lib["faststart.mp4"], p, 0.5, b"mdat"),
    "h264_cut.mkv": lambda p, lib: media.cut_file(lib["h264.mkv"], p, 0.5, CLUSTER),
    "moov_cut.mp4": lambda p, lib: media.cut_file(lib["h264.mp4"], p, 0.5),
    "no_moov.mp4": lambda p, lib: media.drop_moov(lib["h264.mp4"], p),
    "damaged.avi": lambda p, lib: media.blank_packets(lib["mjpeg.avi"], p, [3, 46, 47]),
    "blank.avi": lambda p, lib: media.blank_packets(lib["mjpeg.avi"], p),
    # a codec tag FFmpeg does not know, and a title that is not UTF-8
    "unknown_tag.mp4": lambda p, lib: media.replace_bytes(lib["h264.mp4"], p, b"avc1", b"zzzz"),
    "latin1_title.mp4": lambda p, lib: media.replace_bytes(
        lib["titled.mp4"], p, "Ström".encode(), "Ström".encode("latin-1") + b"\xff"
    ),
    "titled.mp4": lambda p, _: media.write_video(p, metadata={"title": "Ström"}),
    # not videos, or not allowed
    "random.bin": lambda p, _: _write_bytes(p, np.random.default_rng(0).bytes(20_000)),
    "empty.mp4": lambda p, _: _write_bytes(p, b""),
    "image.png": lambda p, _: media.write_image(p, "png"),
    "image.jpg": lambda p, _: media.write_image(p, "mjpeg"),
    "audio.mp4": lambda p, _: media.write_audio(p, "aac"),
    "audio.webm": lambda p, _: media.write_audio(p, "libopus"),
    "stream.ts": lambda p, _: media.write_video(p, num_frames=8),
    "anim.gif": lambda p, _: media.write_video(p, codec="gif", pix_fmt="rgb8", num_frames=8),
    "mpeg2.mkv": lambda p, _: media.write_video(p, codec="mpeg2video", num_frames=8),
}


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


class MediaLibrary:
    """`library["h264.mp4"]` writes the file on first use and returns its path."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __getitem__(self, name: str) -> Path:
        path = self.root / name
        if not path.exists():
            BUILDERS[name](path, self)
        return path


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> MediaLibrary:
    return MediaLibrary(tmp_path_factory.mktemp("videos"))
