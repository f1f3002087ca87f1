"""The view planner: mmaction2's test-mode sampling, crops and the plan's layout."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from model_store.spec import Recipe, Sampling
from service.errors import LimitExceeded
from service.video import VideoInfo, VideoLimits, plan_views
from service.video.sampling import (
    CropBox,
    crop_boxes,
    resize_short_side,
    sample_segments,
    sample_uniform,
    sample_windows,
)

#: The intake's default limits, passed explicitly as the service passes its own.
LIMITS = VideoLimits()

INFO = VideoInfo(
    container="mov,mp4,m4a,3gp,3g2,mj2",
    codec="h264",
    width=1920,
    height=1080,
    pix_fmt="yuv420p",
    fps=30.0,
    variable_frame_rate=False,
    duration_s=10.0,
    start_s=0.0,
    num_frames=300,
    frames_estimated=False,
    rotation=0,
    has_audio=False,
    size_bytes=1,
)
SLOWONLY = Recipe(
    clip_len=8,
    frame_interval=8,
    num_clips=10,
    num_crops=3,
    short_side=256,
    crop_size=256,
    pixel_scale=255.0,
    mean=(123.675, 116.28, 103.53),
    std=(58.395, 57.12, 57.375),
)
TSM = SLOWONLY.model_copy(
    update={"sampling": Sampling.SEGMENTS, "frame_interval": 1, "num_clips": 2, "num_crops": 1}
)


# Values worked out by hand from mmaction2's SampleFrames._get_test_clips (test mode).
@pytest.mark.parametrize(
    ("num_frames", "clip_len", "frame_interval", "num_clips", "expected"),
    [
        # ten clips spread from the first frame to the last start (300 − 16 = 284)
        (
            300,
            16,
            1,
            10,
            [[o + t for t in range(16)] for o in (0, 32, 63, 95, 126, 158, 189, 221, 252, 284)],
        ),
        # one clip is centred: (300 − 61) // 2 = 119, stride 4
        (300, 16, 4, 1, [list(range(119, 180, 4))]),
        # a video shorter than a clip loops
        (10, 16, 1, 2, [[*range(10), *range(6)]] * 2),
        # exactly one clip long: every clip starts at 0
        (16, 16, 1, 3, [list(range(16))] * 3),
    ],
)
def test_uniform_clips_follow_mmaction2(
    num_frames: int, clip_len: int, frame_interval: int, num_clips: int, expected: list
) -> None:
    slots = sample_uniform(num_frames, clip_len, frame_interval, num_clips)
    assert slots.tolist() == expected


@pytest.mark.parametrize(
    ("num_frames", "segments", "num_clips", "expected"),
    [
        # TSN: the middle of each of 8 segments of 37.5 frames
        (300, 8, 1, [[18, 56, 93, 131, 168, 206, 243, 281]]),
        # TSM twice_sample: the middles, then the segment starts
        (300, 8, 2, [[18, 56, 93, 131, 168, 206, 243, 281], [0, 37, 75, 112, 150, 187, 225, 262]]),
        # three clips: shifts of 1/2, 5/6 and 1/6 of a segment
        (
            300,
            8,
            3,
            [
                [18, 56, 93, 131, 168, 206, 243, 281],
                [31, 68, 106, 143, 181, 218, 256, 293],
                [6, 43, 81, 118, 156, 193, 231, 268],
            ],
        ),
        # fewer frames than segments: frames repeat, in order
        (5, 8, 1, [[0, 0, 1, 2, 2, 3, 4, 4]]),
    ],
)
def test_segments_follow_mmaction2(
    num_frames: int, segments: int, num_clips: int, expected: list
) -> None:
    assert sample_segments(num_frames, segments, num_clips).tolist() == expected


@pytest.mark.parametrize(
    ("num_frames", "clip_len", "frame_interval", "sampling", "slots", "spans"),
    [
        # back-to-back 16-frame windows; the 4-frame tail is left out
        (
            100,
            16,
            1,
            Sampling.UNIFORM,
            [list(range(s, s + 16)) for s in range(0, 96, 16)],
            [[s, s + 16] for s in range(0, 96, 16)],
        ),
        # segment windows take each segment's middle frame
        (
            40,
            8,
            2,
            Sampling.SEGMENTS,
            [list(range(1, 16, 2)), list(range(17, 32, 2))],
            [[0, 16], [16, 32]],
        ),
        # shorter than one window: one looped window over the whole video
        (10, 16, 1, Sampling.UNIFORM, [[*range(10), *range(6)]], [[0, 10]]),
    ],
)
def test_windows_cover_the_video_back_to_back(
    num_frames: int, clip_len: int, frame_interval: int, sampling: Sampling, slots, spans
) -> None:
    recipe = SLOWONLY.model_copy(
        update={"clip_len": clip_len, "frame_interval": frame_interval, "sampling": sampling}
    )
    got_slots, got_spans = sample_windows(num_frames, recipe, fps=30.0)
    assert got_slots.tolist() == slots
    assert got_spans.tolist() == spans


@pytest.mark.parametrize(
    ("size", "short_side", "expected"),
    [
        ((1080, 1920), 256, (256, 455)),  # mmcv rounds int(x + 0.5)
        ((240, 320), 128, (128, 171)),
        ((1920, 1080), 256, (455, 256)),  # portrait
        ((241, 321), 32, (32, 43)),  # odd sizes
        ((48, 64), 112, (112, 149)),  # upscaling
    ],
)
def test_resize_keeps_the_aspect_ratio(size, short_side, expected) -> None:
    assert resize_short_side(*size, short_side) == expected


@pytest.mark.parametrize(
    ("frame_size", "crop_size", "num_crops", "expected"),
    [
        # centre crop
        ((256, 455), 224, 1, [(16, 115)]),
        # three crops along the long side: left, centre, right (mmaction2 ThreeCrop offsets)
        ((256, 455), 256, 3, [(0, 0), (0, 99), (0, 198)]),
        # portrait: top, centre, bottom
        ((455, 256), 256, 3, [(0, 0), (99, 0), (198, 0)]),
        # a crop smaller than the short side stays centred across it; the last crop starts at
        # 2 × step like mmaction2's, one pixel short of the edge when the slack is odd
        ((256, 455), 224, 3, [(16, 0), (16, 115), (16, 230)]),
    ],
)
def test_crop_boxes(frame_size, crop_size, num_crops, expected) -> None:
    boxes = crop_boxes(frame_size, crop_size, num_crops)
    assert [(b.top, b.left) for b in boxes] == expected
    assert all(b.size == crop_size for b in boxes)


def test_accurate_plan_is_clip_major_with_times_of_each_slot() -> None:
    plan = plan_views(INFO, SLOWONLY, limits=LIMITS)
    assert plan.num_views == 30
    assert plan.view_clips == tuple(c for c in range(10) for _ in range(3))
    assert plan.view_crops == (0, 1, 2) * 10
    assert plan.frame_size == (256, 455)
    assert plan.crops == (CropBox(0, 0, 256), CropBox(0, 99, 256), CropBox(0, 198, 256))
    # starts 243 / 9 = 27 frames apart; slot s stands for the moment (s + 0.5) / 30 s
    second = plan.clips[1]
    assert second.slots[:3] == (27, 35, 43)
    assert second.times_s[0] == pytest.approx(27.5 / 30)
    assert (second.start_s, second.end_s) == pytest.approx((27 / 30, 84 / 30))


@pytest.mark.parametrize(
    ("recipe", "profile", "windows", "num_clips", "num_crops"),
    [
        # the recipe's protocol, or one clip with the centre crop
        (SLOWONLY, "accurate", False, 10, 3),
        (SLOWONLY, "fast", False, 1, 1),
        (TSM, "accurate", False, 2, 1),
        (TSM, "fast", False, 1, 1),
        # windows replace the clips and keep the profile's crops
        (SLOWONLY, "accurate", True, 4, 3),
        (SLOWONLY, "fast", True, 4, 1),
    ],
)
def test_profiles_and_windows_set_the_view_count(
    recipe: Recipe, profile: str, windows: bool, num_clips: int, num_crops: int
) -> None:
    plan = plan_views(INFO, recipe, profile=profile, windows=windows, limits=LIMITS)
    assert (len(plan.clips), len(plan.crops)) == (num_clips, num_crops)
    assert plan.clip_len == recipe.clip_len


def test_fast_profile_takes_the_centred_clip_and_crop() -> None:
    plan = plan_views(INFO, SLOWONLY, profile="fast", limits=LIMITS)
    assert plan.clips[0].slots == tuple(range(121, 178, 8))  # (300 − 57) // 2 = 121
    assert plan.crops == (CropBox(0, 99, 256),)


KEYFRAMES_S = (0.0, 100 / 30, 250 / 30)  # frames 0, 100 and 250


def test_fast_clip_starts_on_the_nearest_keyframe_where_it_fits() -> None:
    plan = plan_views(INFO, SLOWONLY, profile="fast", limits=LIMITS, keyframes_s=KEYFRAMES_S)
    assert plan.clips[0].slots == tuple(range(100, 157, 8))  # 100 is nearer 121 than 250
    assert plan.snap_s == pytest.approx(-21 / 30)
    assert plan.clips[0].start_s == pytest.approx(100 / 30)
    # 250 + 57 > 300: a clip from the last keyframe would not fit, so it is never chosen
    late = plan_views(INFO, SLOWONLY, profile="fast", limits=LIMITS, keyframes_s=(0.0, 250 / 30))
    assert late.clips[0].slots[0] == 0


@pytest.mark.parametrize(
    ("recipe", "profile", "windows"),
    [(SLOWONLY, "accurate", False), (TSM, "fast", False), (SLOWONLY, "fast", True)],
)
def test_only_fast_uniform_clips_move_to_keyframes(recipe, profile, windows) -> None:
    """The protocol-exact accurate plan, segments and windows ignore the keyframes."""
    plain = plan_views(INFO, recipe, profile=profile, windows=windows, limits=LIMITS)
    keyed = plan_views(
        INFO, recipe, profile=profile, windows=windows, limits=LIMITS, keyframes_s=KEYFRAMES_S
    )
    assert keyed == plain and keyed.snap_s is None


def test_a_clip_already_on_a_keyframe_does_not_move() -> None:
    plan = plan_views(INFO, SLOWONLY, profile="fast", limits=LIMITS, keyframes_s=(121 / 30,))
    assert plan.clips[0].slots[0] == 121 and plan.snap_s is None


def test_moments_do_not_depend_on_the_rotation() -> None:
    """The decode job plans moments before the first frame tells the rotation."""
    for profile in ("accurate", "fast"):
        upright = plan_views(INFO, SLOWONLY, profile=profile, limits=LIMITS)
        turned = plan_views(replace(INFO, rotation=90), SLOWONLY, profile=profile, limits=LIMITS)
        np.testing.assert_array_equal(upright.times_s, turned.times_s)


def test_segment_and_looped_clips_span_the_whole_video() -> None:
    for clip in plan_views(INFO, TSM, limits=LIMITS).clips:
        assert (clip.start_s, clip.end_s) == (0.0, 10.0)
    short = replace(INFO, num_frames=20, duration_s=20 / 30)
    clip = plan_views(short, SLOWONLY, profile="fast", limits=LIMITS).clips[0]
    assert clip.slots == (0, 8, 16, 4, 12, 0, 8, 16)
    assert (clip.start_s, clip.end_s) == pytest.approx((0.0, 20 / 30))


def test_windows_report_their_own_seconds() -> None:
    plan = plan_views(INFO, SLOWONLY, windows=True, limits=LIMITS)
    edges = [edge for clip in plan.clips for edge in (clip.start_s, clip.end_s)]
    assert edges == pytest.approx([(k + e) * 64 / 30 for k in range(4) for e in (0, 1)])


@pytest.mark.parametrize(
    ("limits", "windows", "limit", "value", "maximum"),
    [
        # whole-video windows: 300 frames / 64 = 4 windows
        (VideoLimits(max_windows=3), True, "windows", 4, 3),
        # 30 views of 3×8×256×256 float32 = 188,743,680 bytes
        (VideoLimits(max_view_bytes=2**27), False, "view_bytes", 188_743_680, 2**27),
    ],
)
def test_plans_over_a_limit_are_refused(limits, windows, limit, value, maximum) -> None:
    with pytest.raises(LimitExceeded, match=f"^{limit} over the limit") as caught:
        plan_views(INFO, SLOWONLY, windows=windows, limits=limits)
    assert (caught.value.limit, caught.value.value, caught.value.maximum) == (limit, value, maximum)


def test_variable_rate_timeline_is_spread_evenly_over_the_duration() -> None:
    vfr = replace(INFO, num_frames=345, duration_s=10.0, variable_frame_rate=True)
    times = plan_views(vfr, TSM, profile="fast", limits=LIMITS).times_s[0]
    np.testing.assert_allclose(times, (np.array(sample_segments(345, 8, 1)[0]) + 0.5) / 34.5)


def test_rotation_swaps_the_displayed_frame() -> None:
    plan = plan_views(replace(INFO, rotation=90), SLOWONLY, limits=LIMITS)
    assert plan.frame_size == (455, 256)
    assert [(c.top, c.left) for c in plan.crops] == [(0, 0), (99, 0), (198, 0)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"in_channels": 2, "mean": (0.0, 0.0), "std": (1.0, 1.0)}, "frames have 3"),
    ],
)
def test_recipes_a_video_cannot_feed_are_refused(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_views(INFO, SLOWONLY.model_copy(update=change), limits=LIMITS)


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="profile must be"):
        plan_views(INFO, SLOWONLY, profile="quick", limits=LIMITS)  # type: ignore[arg-type]
