"""Decoding: the frames the plan asked for, in order, cut and normalised as the recipe says.

The frame-index videos paint each frame's number as its colour, so reading a view's colour
back tells which frame the sampler really took.
"""

from __future__ import annotations

import av
import numpy as np
import pytest

from model_store.spec import ChannelOrder, Recipe, Sampling
from service.errors import CorruptVideo
from service.video import DecodeOptions, VideoLimits, assemble_views, decode_video, sample_frames
from tests.service.video.conftest import VFR_PTS_MS
from tests.service.video.media import frame_ids, view_ids

#: The intake's default limits, passed explicitly as the service passes its own.
LIMITS = VideoLimits()

IDENTITY = Recipe(  # views hold the plain 0..255 RGB pixels
    clip_len=4,
    frame_interval=3,
    num_clips=3,
    num_crops=3,
    short_side=32,
    crop_size=32,
    pixel_scale=255.0,
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
)
SEGMENTS = IDENTITY.model_copy(
    update={"sampling": Sampling.SEGMENTS, "clip_len": 8, "frame_interval": 1, "num_clips": 2}
)

INDEX_VIDEOS = ["h264.mp4", "h264.mkv", "vp9.webm", "mpeg4.avi", "mjpeg.avi", "h264_bframes.avi"]
MODES = {
    # uniform clips: the full protocol, the centred clip, whole-video windows
    "uniform": (IDENTITY, DecodeOptions()),
    "uniform-fast": (IDENTITY, DecodeOptions(profile="fast")),
    "uniform-windows": (IDENTITY, DecodeOptions(windows=True)),
    # segments (TSN/TSM): twice-sampled, once, and as windows
    "segments": (SEGMENTS, DecodeOptions()),
    "segments-fast": (SEGMENTS, DecodeOptions(profile="fast")),
    "segments-windows": (SEGMENTS, DecodeOptions(windows=True)),
}


def planned_slots(video) -> np.ndarray:
    """(V, T) frame slots the plan asked for, view by view."""
    slots = np.array([clip.slots for clip in video.plan.clips])
    return slots[list(video.plan.view_clips)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", INDEX_VIDEOS)
def test_views_hold_the_planned_frames_in_order(videos, name: str, mode: str) -> None:
    recipe, options = MODES[mode]
    video = decode_video(videos[name], recipe, options, LIMITS)
    assert video.views.shape == (video.plan.num_views, 3, recipe.clip_len, 32, 32)
    assert video.views.dtype == np.float32
    np.testing.assert_array_equal(view_ids(video.views), planned_slots(video))


@pytest.mark.parametrize("name", ["h264.mp4", "h264.mkv", "mpeg4.avi", "mjpeg.avi"])
def test_sparse_targets_decode_fewer_frames_than_the_video_has(videos, name: str) -> None:
    """Seeks to the keyframe before each clip: short-GOP files skip most of the video."""
    video = decode_video(videos[name], IDENTITY, DecodeOptions(profile="fast"), LIMITS)
    assert video.frames_decoded < video.info.num_frames
    assert not video.warnings


def test_timestamps_out_of_decode_order_fall_back_to_frame_order(videos) -> None:
    video = decode_video(videos["h264_bframes.avi"], IDENTITY, DecodeOptions(), LIMITS)
    assert any("re-read sequentially" in note for note in video.warnings)
    np.testing.assert_array_equal(view_ids(video.views), planned_slots(video))


def test_views_are_clip_major_with_each_clips_seconds(videos) -> None:
    video = decode_video(videos["h264.mp4"], IDENTITY, DecodeOptions(), LIMITS)
    assert video.view_clip.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert video.view_crop.tolist() == [0, 1, 2] * 3
    # 96 frames at 30 fps; clip starts 0, 43, 86 (max offset 86 = 96 − 10)
    np.testing.assert_allclose(video.view_start_s, np.repeat([0, 43 / 30, 86 / 30], 3))
    np.testing.assert_allclose(video.view_end_s, np.repeat([10 / 30, 53 / 30, 96 / 30], 3))


@pytest.mark.parametrize("name", ["vfr.mp4", "vfr.mkv"])
def test_variable_frame_rate_samples_by_presentation_time(videos, name: str) -> None:
    """30, then 5, then 60 fps: the frame on screen at each planned moment, not frame n."""
    video = decode_video(videos[name], SEGMENTS, DecodeOptions(profile="fast"), LIMITS)
    assert (video.info.num_frames, video.info.variable_frame_rate) == (345, True)
    times_ms = np.array(video.plan.clips[0].times_s) * 1000
    on_screen = np.searchsorted(VFR_PTS_MS, times_ms, side="right") - 1
    got = view_ids(video.views)[0]
    np.testing.assert_array_equal(got, on_screen)
    # counting frames instead would crowd into the 60 fps stretch
    by_count = np.array(video.plan.clips[0].slots)
    assert (got != by_count).sum() >= 4
    assert np.diff(np.array(VFR_PTS_MS)[got]).min() > 800  # about 10 s / 8 apart


def test_one_frame_video_fills_every_slot(videos) -> None:
    video = decode_video(videos["one_frame.mp4"], IDENTITY, DecodeOptions(), LIMITS)
    assert (video.info.num_frames, video.frames_decoded) == (1, 1)
    assert (view_ids(video.views) == 0).all()
    assert not video.warnings


@pytest.mark.parametrize("name", ["odd_h264.mp4", "odd_mjpeg.avi", "odd_mpeg4.avi"])
def test_odd_frame_sizes(videos, name: str) -> None:
    video = decode_video(videos[name], IDENTITY, DecodeOptions(), LIMITS)
    assert video.plan.frame_size == (32, 43)  # 321×241 with the short side at 32
    np.testing.assert_array_equal(view_ids(video.views), planned_slots(video))


def test_crops_cut_the_resized_frame_where_the_plan_says(videos) -> None:
    """Gradient R = 2x + 10, G = 3y + 10 on 96×64; a 2:1 box resize gives 4x' + 11, 6y' + 11.5."""
    recipe = IDENTITY.model_copy(update={"clip_len": 2, "num_clips": 1})
    video = decode_video(videos["gradient.mp4"], recipe, DecodeOptions(), LIMITS)
    assert video.plan.frame_size == (32, 48)
    lefts = [crop.left for crop in video.plan.crops]
    assert lefts == [0, 8, 16]
    columns, rows = np.arange(32), np.arange(32)
    for view, left in enumerate(lefts):
        red, green = video.views[view, 0, 0], video.views[view, 1, 0]
        np.testing.assert_allclose(
            red, np.broadcast_to(4 * (left + columns) + 11, (32, 32)), atol=3
        )
        np.testing.assert_allclose(
            green, np.broadcast_to(6 * rows[:, None] + 11.5, (32, 32)), atol=3
        )


def test_rotation_is_applied_before_resizing_and_cropping(videos) -> None:
    """A 64×48 frame shown a quarter-turn: 48×64 portrait, three crops top to bottom."""
    path = videos["rotated.mp4"]
    recipe = IDENTITY.model_copy(
        update={"clip_len": 1, "num_clips": 1, "short_side": 24, "crop_size": 24}
    )
    sampled = sample_frames(path, recipe, DecodeOptions(), LIMITS)
    assert sampled.info.rotation == 90
    assert sampled.plan.frame_size == (32, 24)
    assert [(c.top, c.left) for c in sampled.plan.crops] == [(0, 0), (4, 0), (8, 0)]
    # reference: PyAV's full frame, turned like ffmpeg's autorotate, 2:1 box-averaged
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        full = np.rot90(frame.to_ndarray(format="rgb24"), k=frame.rotation // 90).astype(float)
    reference = full.reshape(32, 2, 24, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(sampled.frames[0], reference, atol=5)  # YUV↔RGB rounding


def test_normalisation_follows_the_recipe_exactly(videos) -> None:
    recipe = IDENTITY.model_copy(
        update={
            "pixel_scale": 1.0,
            "mean": (0.45, 0.40, 0.35),
            "std": (0.225, 0.25, 0.275),
            "channel_order": ChannelOrder.BGR,
        }
    )
    sampled = sample_frames(videos["gradient.mp4"], recipe, DecodeOptions(), LIMITS)
    views = assemble_views(sampled, recipe).views
    for view in range(sampled.plan.num_views):
        clip, crop = divmod(view, 3)
        box = sampled.crops[crop]
        frames = sampled.frames[sampled.frame_of_slot[clip]]
        pixels = frames[:, box.top : box.top + 32, box.left : box.left + 32].astype(np.float64)
        expected = (pixels / 255.0 * 1.0 - np.array(recipe.mean)) / np.array(recipe.std)
        expected = expected.transpose(3, 0, 1, 2)
        np.testing.assert_allclose(views[view], expected, rtol=1e-6, atol=1e-6)


def test_views_can_be_written_into_a_callers_buffer(videos) -> None:
    sampled = sample_frames(videos["h264.mp4"], IDENTITY, DecodeOptions(), LIMITS)
    batch = np.zeros((12, 3, 4, 32, 32), dtype=np.float32)
    video = assemble_views(sampled, IDENTITY, out=batch[2:11])
    assert np.shares_memory(video.views, batch)
    np.testing.assert_array_equal(batch[2:11], assemble_views(sampled, IDENTITY).views)
    assert not batch[:2].any() and not batch[11:].any()
    with pytest.raises(ValueError, match="out must be float32"):
        assemble_views(sampled, IDENTITY, out=batch[:8])


def test_bgr_recipes_get_the_channels_reversed(videos) -> None:
    rgb = sample_frames(videos["gradient.mp4"], IDENTITY, DecodeOptions(), LIMITS)
    bgr = sample_frames(
        videos["gradient.mp4"],
        IDENTITY.model_copy(update={"channel_order": "BGR"}),
        DecodeOptions(),
        LIMITS,
    )
    np.testing.assert_array_equal(bgr.frames, rgb.frames[..., ::-1])


def test_workers_send_each_frame_once_as_uint8(videos) -> None:
    """Three crops of ten clips: 30 float views, but only the distinct frames cross the pipe."""
    sampled = sample_frames(videos["h264.mp4"], IDENTITY, DecodeOptions(), LIMITS)
    assert sampled.frames.dtype == np.uint8
    # 3 clips × 4 distinct frames, cut to the union of the crops (lefts 0, 5, 10 on 43 px)
    assert sampled.frames.shape == (12, 32, 42, 3)
    views = assemble_views(sampled, IDENTITY).views
    assert views.nbytes / sampled.frames.nbytes > 4


def presentation_ids(path) -> np.ndarray:
    """Painted index of every frame whose packet is in the file, in presentation order."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = sorted(p.pts for p in container.demux(stream) if p.size)
        return np.array([round(float(t * stream.time_base) * 30) for t in pts])


@pytest.mark.parametrize("name", ["faststart_cut.mp4", "h264_cut.mkv"])
def test_truncated_files_are_sampled_over_what_is_there(videos, name: str) -> None:
    """The header still says 3.2 s; the packets end about a third in, and so do the clips.

    Truncation also drops B-frames whose packets came after the cut, so the frames present are
    not 0..n-1: each planned moment takes the present frame on screen then.
    """
    video = decode_video(videos[name], IDENTITY, DecodeOptions(), LIMITS)
    assert video.degraded
    assert any(note.startswith("truncated") for note in video.warnings)
    present = presentation_ids(videos[name])
    assert 30 < video.info.num_frames == len(present) < 66
    times = (present - present[0]) / 30.0
    moments = np.array([clip.times_s for clip in video.plan.clips])[list(video.plan.view_clips)]
    on_screen = present[np.searchsorted(times, moments, side="right") - 1]
    np.testing.assert_array_equal(view_ids(video.views), on_screen)


def test_damaged_packets_cost_a_few_frames_not_the_file(videos) -> None:
    video = decode_video(videos["damaged.avi"], IDENTITY, DecodeOptions(), LIMITS)
    assert any(note.startswith("corrupt") for note in video.warnings)
    ids, planned = view_ids(video.views), planned_slots(video)
    assert (np.abs(ids - planned) <= 2).all()  # a blanked frame is replaced by a neighbour


def test_too_many_damaged_packets_make_a_corrupt_file(videos) -> None:
    with pytest.raises(CorruptVideo, match="packets failed to decode"):
        decode_video(
            videos["damaged.avi"], IDENTITY, DecodeOptions(), VideoLimits(max_corrupt_packets=1)
        )


@pytest.mark.parametrize("threads", [0, 1])
def test_decoder_threads_do_not_change_the_result(videos, threads: int) -> None:
    video = decode_video(
        videos["h264.mp4"], IDENTITY, DecodeOptions(decoder_threads=threads), LIMITS
    )
    np.testing.assert_array_equal(view_ids(video.views), planned_slots(video))


def test_frame_ids_read_back_every_painted_index() -> None:
    from tests.service.video.media import paint_index

    frames = np.stack([paint_index(i, 4, 4) for i in range(512)])
    np.testing.assert_array_equal(frame_ids(frames), np.arange(512))
