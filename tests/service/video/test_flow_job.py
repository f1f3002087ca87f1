"""Flow in the decode job: a flow recipe's views are TV-L1 stacks of the sampled frames and
the next ones, normalised by the recipe; a two-stream job reads each frame once."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from model_store.spec import Recipe
from service.errors import DecodeTimeout, TooFewFrames, status_for
from service.video import (
    DecodeOptions,
    DecodePool,
    DecodeSettings,
    VideoLimits,
    decode_video,
    sample_streams,
)
from tests.service.video import decode
from tests.service.video.media import moving_texture, write_video

LIMITS = VideoLimits()
OPTIONS = DecodeOptions()
RGB = Recipe(
    clip_len=4,
    frame_interval=1,
    num_clips=2,
    num_crops=1,
    short_side=80,
    crop_size=64,
    pixel_scale=255.0,
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
)
#: Flow levels minus 128: zero motion is -0.5 (127.5 rounds to 128), one pixel is 6.375.
FLOW = RGB.as_flow()
LEVELS_PER_PX = 255 / 40


def _motion(views: np.ndarray) -> tuple[float, float]:
    """Median x and y displacement (px) of (V, 2, T, H, W) flow views, away from the borders."""
    inner = views[:, :, :, 8:-8, 8:-8]
    x, y = (np.median(inner[:, c]) for c in range(2))
    return (x + 0.5) / LEVELS_PER_PX, (y + 0.5) / LEVELS_PER_PX


def test_flow_views_show_the_videos_motion(videos) -> None:
    video = decode_video(videos["motion.mp4"], FLOW, OPTIONS, LIMITS)
    assert video.views.shape == (2, 2, 4, 64, 64) and video.views.dtype == np.float32
    assert video.flow_s > 0 and video.decode_s > video.flow_s
    x, y = _motion(video.views)
    assert x == pytest.approx(2, abs=0.3) and y == pytest.approx(-1, abs=0.3)
    # Normalised by the recipe: grey levels 0..255 minus the mean 128.
    assert video.views.min() >= -128 and video.views.max() <= 127


def test_stacks_of_two_fields_interleave_them(videos) -> None:
    recipe = RGB.as_flow(frames_per_stack=2)
    video = decode_video(videos["motion.mp4"], recipe, DecodeOptions(profile="fast"), LIMITS)
    assert video.views.shape == (1, 4, 4, 64, 64)
    assert _motion(video.views[:, 0:2]) == pytest.approx((2, -1), abs=0.3)
    assert _motion(video.views[:, 2:4]) == pytest.approx((2, -1), abs=0.3)


def test_a_two_stream_job_reads_each_frame_once(videos) -> None:
    path = videos["motion.mp4"]
    rgb, flow = sample_streams(path, (RGB, FLOW), OPTIONS, LIMITS)
    alone = sample_streams(path, (FLOW,), OPTIONS, LIMITS)[0]
    np.testing.assert_array_equal(
        rgb.frames, sample_streams(path, (RGB,), OPTIONS, LIMITS)[0].frames
    )
    np.testing.assert_array_equal(flow.frames, alone.frames)
    # The flow needs every sampled frame and the next: the RGB frames come with it.
    assert rgb.frames_decoded == flow.frames_decoded == alone.frames_decoded
    assert rgb.flow_s == 0 and flow.flow_s > 0


def test_a_one_frame_video_is_too_short_for_flow(videos) -> None:
    with pytest.raises(TooFewFrames) as raised:
        decode_video(videos["one_frame.mp4"], FLOW, OPTIONS, LIMITS)
    assert status_for(raised.value) == 422 and raised.value.code == "too_few_frames"
    assert raised.value.details() == {"limit": "min_frames", "value": 1, "minimum": 2}
    assert "optical-flow model needs at least 2 frames; the video has 1" in str(raised.value)
    decode_video(videos["one_frame.mp4"], RGB, OPTIONS, LIMITS)  # frames alone are fine


def test_flow_counts_against_the_decode_timeout(tmp_path) -> None:
    """One file and one pool: its 20 clips of frames decode well within the timeout (about
    0.4 s), its 20 × 16 flow fields at 160×160 (about 100 s on one core) do not."""
    path = write_video(
        tmp_path / "long.mp4",
        size=(192, 160),
        num_frames=400,
        painter=moving_texture(1, 0, margin=400),
    )
    frames = RGB.model_copy(
        update={"num_clips": 20, "clip_len": 16, "short_side": 160, "crop_size": 160}
    )
    pool = DecodePool(DecodeSettings(workers=1, timeout_s=5.0), LIMITS)

    async def run() -> None:
        async with pool:
            rgb = await decode(pool, path, frames)
            assert rgb.views.shape == (20, 3, 16, 160, 160)
            with pytest.raises(DecodeTimeout):
                await decode(pool, path, frames.as_flow())
            (flow,) = await pool.decode_streams(path, (FLOW,), DecodeOptions(profile="fast"))
            assert flow.views.shape == (1, 2, 4, 64, 64)  # the pool goes on serving

    asyncio.run(run())
