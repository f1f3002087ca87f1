"""Each family's test protocol, rebuilt from its reference code (tests/service/video/references.py)
and compared with actserve's plan and views: frame indices over every video length, resize sizes
and crop boxes over many frame sizes, and whole views on a generated MJPEG video."""

from __future__ import annotations

from dataclasses import replace

import av
import numpy as np
import pytest
import torch

from model_store.spec import (
    CropRule,
    PreScale,
    Recipe,
    ResizeFilter,
    Sampling,
    SizeRounding,
    WindowTail,
)
from service.video import DecodeOptions, VideoInfo, VideoLimits, decode_video, plan_views
from service.video.pixels import torch_bilinear
from service.video.sampling import crop_boxes, frame_geometry, torch_linspace
from tests.service.video import references as ref
from tests.service.video.families import FAMILIES

LIMITS = VideoLimits(max_windows=1000)

BASE = dict(num_crops=1, short_side=256, crop_size=224, pixel_scale=255.0, mean=(0.0,) * 3)
UNIFORM = Recipe(clip_len=8, frame_interval=8, num_clips=10, std=(1.0,) * 3, **BASE)
TSM = UNIFORM.model_copy(
    update={"sampling": Sampling.SEGMENTS, "clip_len": 8, "frame_interval": 1, "num_clips": 2}
)
HARA = Recipe(
    sampling=Sampling.SLIDING,
    clip_len=16,
    frame_interval=1,
    num_clips=1,
    window_tail=WindowTail.LOOP,
    std=(1.0,) * 3,
    **BASE,
)


def video_info(num_frames: int, fps: float = 30.0, size: tuple[int, int] = (240, 320)) -> VideoInfo:
    """A constant-rate video of `num_frames` frames; `size` is (height, width)."""
    return VideoInfo(
        container="avi",
        codec="mjpeg",
        width=size[1],
        height=size[0],
        pix_fmt="yuvj420p",
        fps=fps,
        variable_frame_rate=False,
        duration_s=num_frames / fps,
        start_s=0.0,
        num_frames=num_frames,
        frames_estimated=False,
        rotation=0,
        has_audio=False,
        size_bytes=1,
    )


def planned(info: VideoInfo, recipe: Recipe, **options) -> list[list[int]]:
    return [list(clip.slots) for clip in plan_views(info, recipe, limits=LIMITS, **options).clips]


# --------------------------------------------------------------------------- frame indices


@pytest.mark.parametrize("num_frames", [1, 7, 63, 64, 65, 71, 150, 299, 300, 1001])
def test_uniform_clips_are_mmaction2s(num_frames: int) -> None:
    expected = ref.mmaction_sample_frames(num_frames, 8, 8, 10)
    assert planned(video_info(num_frames), UNIFORM) == expected.tolist()


@pytest.mark.parametrize("num_frames", [1, 5, 8, 9, 37, 150, 301])
def test_tsm_segments_are_mmaction2s_twice_sample(num_frames: int) -> None:
    expected = ref.mmaction_tsm_views(num_frames, 8)
    assert planned(video_info(num_frames), TSM) == expected.tolist()


@pytest.mark.parametrize(
    ("clip_len", "tau", "fps"),
    [
        (4, 12, 30.0),
        (13, 6, 30.0),
        (16, 5, 30.0),
        (16, 5, 25.0),
        (16, 5, 30000 / 1001),
        (4, 12, 60),
    ],
)
def test_slowfast_clips_are_pyslowfasts_linspace(clip_len: int, tau: int, fps: float) -> None:
    """decoder.decode's fps-normalised span, starts delta·i/10, torch.linspace, clamp, long:
    over every video length from 1 to 400 frames."""
    recipe = UNIFORM.model_copy(
        update={
            "sampling": Sampling.SLOWFAST,
            "clip_len": clip_len,
            "frame_interval": tau,
            "target_fps": 30.0,
        }
    )
    for num_frames in range(1, 401):
        expected = [
            ref.slowfast_clip_indices(num_frames, clip_len, tau, fps, 10, i).tolist()
            for i in range(10)
        ]
        assert planned(video_info(num_frames, fps), recipe) == expected, num_frames


def test_slowfast_segments_are_pyslowfasts_ssv2_frames() -> None:
    recipe = TSM.model_copy(
        update={"sampling": Sampling.SLOWFAST_SEGMENTS, "clip_len": 16, "num_clips": 1}
    )
    for num_frames in range(1, 200):
        expected = [ref.slowfast_ssv2_seq(num_frames, 16)]
        assert planned(video_info(num_frames), recipe) == expected, num_frames


@pytest.mark.parametrize(
    ("tail", "windows_of"),
    [
        (WindowTail.LOOP, ref.hara_master_windows),
        (WindowTail.LOOP_UNLESS_ONE, ref.hara_2018_windows),
    ],
)
def test_sliding_windows_are_3d_resnets(tail: WindowTail, windows_of) -> None:
    """Every window of the video is a view, the tail loop-padded; the CVPR2018 branch never
    starts a window at the last frame. `per_clip` takes the same windows."""
    recipe = HARA.model_copy(update={"window_tail": tail})
    for num_frames in range(2, 100):
        info = video_info(num_frames)
        expected = windows_of(num_frames, 16)
        assert planned(info, recipe) == expected, num_frames
        assert planned(info, recipe, windows=True) == expected, num_frames


def test_torch_linspace_is_torchs_value_for_value() -> None:
    rng = np.random.default_rng(0)
    for _ in range(3000):
        start = float(rng.random() * 3000) if rng.random() < 0.5 else float(rng.integers(0, 3000))
        end = start + float(rng.choice([47.0, 79.0, 65.0, rng.random() * 200]))
        steps = int(rng.choice([1, 2, 4, 8, 13, 16, 32]))
        np.testing.assert_array_equal(
            torch_linspace(start, end, steps), torch.linspace(start, end, steps).numpy()
        )


# --------------------------------------------------------------------------- sizes and crops

SIZES = [(h, w) for h in (48, 70, 71, 112, 240, 241, 360) for w in (64, 96, 97, 320, 427, 480)]


def corner(frame: np.ndarray) -> tuple[int, int]:
    """Where a crop of a coordinate image starts: (top, left)."""
    return int(frame[0, 0]) // 10_000, int(frame[0, 0]) % 10_000


def coordinates(height: int, width: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    return (ys * 10_000 + xs)[None]  # one "frame"


@pytest.mark.parametrize("size", SIZES)
def test_mmaction2_resize_and_three_crop(size: tuple[int, int]) -> None:
    recipe = UNIFORM.model_copy(update={"num_crops": 3, "short_side": 48, "crop_size": 48})
    _, frame_size = frame_geometry(size, recipe)
    assert frame_size == ref.mmcv_rescale(np.zeros((*size, 3), np.uint8), 48).shape[:2]
    left, right, middle = ref.mmaction_three_crop(coordinates(*frame_size), 48)
    boxes = crop_boxes(frame_size, 48, 3, recipe.crop_rule)
    assert [(b.top, b.left) for b in boxes] == [corner(c[0]) for c in (left, middle, right)]
    centre = ref.mmaction_centre_crop(coordinates(*frame_size), 40)
    box = crop_boxes(frame_size, 40, 1, recipe.crop_rule)[0]
    assert corner(centre[0]) == (box.top, box.left)


@pytest.mark.parametrize("size", SIZES)
def test_pyslowfast_reader_sizes_and_uniform_crops(size: tuple[int, int]) -> None:
    """torchvision reader (C round) for X3D, random_short_side_scale_jitter (floor) for VoV3D,
    uniform_crop (ceil) for both."""
    height, width = size
    frame = av.VideoFrame(width, height, "rgb24")
    for rounding, crop in ((SizeRounding.NEAREST, 40), (SizeRounding.FLOOR, 42)):
        recipe = UNIFORM.model_copy(
            update={
                "num_crops": 3,
                "short_side": crop,
                "crop_size": crop,
                "size_rounding": rounding,
                "crop_rule": CropRule.CEIL,
            }
        )
        _, frame_size = frame_geometry(size, recipe)
        if rounding == SizeRounding.NEAREST:
            expected = ref.torchvision_reader_frame(frame, crop).shape[:2]
        else:
            expected = ref.slowfast_short_side_scale(torch.zeros(1, 1, *size), crop).shape[2:]
        assert frame_size == tuple(expected)
        grid = torch.from_numpy(coordinates(*frame_size))[None]
        expected_corners = [
            corner(ref.slowfast_uniform_crop(grid, crop, i)[0, 0].numpy()) for i in range(3)
        ]
        boxes = crop_boxes(frame_size, crop, 3, CropRule.CEIL)
        assert [(b.top, b.left) for b in boxes] == expected_corners


@pytest.mark.parametrize("size", SIZES)
def test_3d_resnets_prescale_resize_and_centre_crop(size: tuple[int, int]) -> None:
    """The ffmpeg CLI's pre-scale (short side or height 240), torchvision's Resize(112) and
    CenterCrop(112) on PIL images."""
    height, width = size
    for side in ("short", "height"):
        recipe = HARA.model_copy(
            update={
                "prescale": PreScale(size=240, side=side),
                "resize_filter": ResizeFilter.PIL_BILINEAR,
                "size_rounding": SizeRounding.TRUNCATE,
                "crop_rule": CropRule.ROUND,
                "short_side": 112,
                "crop_size": 112,
            }
        )
        prescaled, frame_size = frame_geometry(size, recipe)
        image = ref.ffmpeg_scale_240(av.VideoFrame(width, height, "rgb24"), 240, side == "height")
        assert prescaled == image.shape[:2]
        assert frame_size == ref.torchvision_resize(image, 112).shape[:2]
        box = crop_boxes(frame_size, 112, 1, CropRule.ROUND)[0]
        crop = ref.torchvision_centre_crop(coordinates(*frame_size)[0], 112)
        assert (box.top, box.left) == corner(crop)


# --------------------------------------------------------------------------- whole views


@pytest.mark.parametrize("windows", [False, True], ids=["accurate", "per_clip"])
@pytest.mark.parametrize("family", FAMILIES)
def test_views_equal_the_reference_pipeline(videos, family: str, windows: bool) -> None:
    """Decode, sample, resize, crop and normalise as the family's reference code does, on an
    intra-only MJPEG video of odd size: the same views, pixel for pixel (float32 rounding of
    the normalisation aside; torch's bilinear interpolation within 1e-4 of a level)."""
    case = FAMILIES[family]
    recipe = case.recipe()
    path = videos["protocol.avi"]
    ours = decode_video(path, recipe, DecodeOptions(windows=windows), LIMITS)
    views, clips = ref.reference_views(case.pipeline, path, recipe, windows=windows)
    assert ours.views.shape == views.shape
    np.testing.assert_array_equal(ours.view_clip, clips)
    levels = np.abs(ours.views - views) * np.array(recipe.std)[None, :, None, None, None]
    levels *= 255.0 / recipe.pixel_scale
    tolerance = 1e-4 if recipe.resize_filter == ResizeFilter.TORCH_BILINEAR else 1e-3
    assert levels.max() < tolerance


@pytest.mark.parametrize("name", ["p3d_rotated_vp9.webm", "p3d_full_range.avi"])
def test_p3d_views_equal_caffes_on_rotated_vp9_and_full_range_mjpeg(videos, name: str) -> None:
    """P3D's registered recipe at its own sizes (182×242 stretch, 160 crop; two clips of four
    frames) on 640×360 inputs, against OpenCV's own decode: the displayed frame is stretched,
    and the BGR frames are FFmpeg's conversion level for level, full range included."""
    from backbones import default_spec

    recipe = default_spec("p3d_63", num_classes=7).recipe.model_copy(
        update={"clip_len": 4, "frame_interval": 2, "num_clips": 2}
    )
    assert (recipe.stretch_to, recipe.channel_order) == ((182, 242), "BGR")
    path = videos[name]
    ours = decode_video(path, recipe, DecodeOptions(), LIMITS)
    views, clips = ref.caffe_p3d_views(path, recipe)
    assert ours.plan.frame_size == (182, 242)
    assert ours.views.shape == views.shape == (2, 3, 4, 160, 160)
    np.testing.assert_array_equal(ours.view_clip, clips)
    levels = np.abs(ours.views - views) * np.array(recipe.std)[None, :, None, None, None]
    assert levels.max() < 1e-3


def test_fast_profile_takes_one_centred_clip_and_crop(videos) -> None:
    """actserve's own profile (not a paper protocol) under every sampler: one clip, one crop."""
    path = videos["protocol.avi"]
    for case in FAMILIES.values():
        video = decode_video(path, case.recipe(), DecodeOptions(profile="fast"), LIMITS)
        assert (len(video.plan.clips), len(video.plan.crops)) == (1, 1)
        clip = video.plan.clips[0]
        middle = (clip.start_s + clip.end_s) / 2
        assert abs(middle - video.plan.duration_s / 2) <= 4 / 30, case.model


# --------------------------------------------------------------------------- pixel paths


def test_bgr_views_are_the_rgb_views_reversed_on_full_range_mjpeg(videos) -> None:
    """swscale's scaled packed-BGR output is not its RGB output reversed (flat colours come out
    mixed, up to 5 levels apart): BGR recipes reverse RGB frames instead."""
    path = videos["flat_yuvj.avi"]
    rgb = UNIFORM.model_copy(
        update={
            "clip_len": 2,
            "frame_interval": 1,
            "num_clips": 2,
            "short_side": 32,
            "crop_size": 32,
        }
    )
    bgr = rgb.model_copy(update={"channel_order": "BGR"})
    for recipe in (rgb, rgb.model_copy(update={"resize_filter": ResizeFilter.CV2_LINEAR})):
        ours_rgb = decode_video(path, recipe, DecodeOptions(), LIMITS).views
        ours_bgr = decode_video(
            path, recipe.model_copy(update={"channel_order": "BGR"}), DecodeOptions(), LIMITS
        ).views
        np.testing.assert_array_equal(ours_bgr, ours_rgb[:, ::-1])
    # and the RGB views are the reference's: flat colours stay flat through the area filter
    frames = ref.decode_all(path, lambda f: ref.torchvision_reader_frame(f, 32))
    video = decode_video(path, bgr, DecodeOptions(), LIMITS)
    for view, clip in zip(video.views, video.view_clip, strict=True):
        slots = video.plan.clips[clip].slots
        expected = np.stack([frames[s] for s in slots])[..., ::-1]
        crop = video.plan.crops[0]
        expected = expected[:, crop.top : crop.top + 32, crop.left : crop.left + 32]
        np.testing.assert_array_equal(view.transpose(1, 2, 3, 0), expected)


def test_torch_bilinear_is_torchs_interpolation() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        height, width = (int(v) for v in rng.integers(20, 200, size=2))
        size = tuple(int(v) for v in rng.integers(16, 260, size=2))
        image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        tensor = torch.from_numpy(image).permute(2, 0, 1)[None].float()
        expected = torch.nn.functional.interpolate(
            tensor, size=size, mode="bilinear", align_corners=False
        )[0].permute(1, 2, 0)
        rows, columns = np.arange(size[0]), np.arange(size[1])
        got = torch_bilinear(image, size, rows, columns)
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-4, rtol=0)
        part = torch_bilinear(image, size, rows[3:11], columns[5:9])
        np.testing.assert_array_equal(part, got[3:11, 5:9])


def test_rotated_video_is_resized_as_displayed(videos) -> None:
    """Research loaders ignore rotation; actserve honours it: the displayed frame is what every
    resize path sees, so all filters agree on the geometry of a quarter-turned video."""
    path = videos["rotated.mp4"]
    for resize_filter in ResizeFilter:
        recipe = UNIFORM.model_copy(
            update={
                "clip_len": 1,
                "num_clips": 1,
                "short_side": 24,
                "crop_size": 24,
                "resize_filter": resize_filter,
            }
        )
        video = decode_video(path, recipe, DecodeOptions(), LIMITS)
        assert video.plan.frame_size == (32, 24)
        green = video.views[0, 1, 0]  # G = 3y + 10 of the coded frame: constant along rows
        assert np.ptp(green.mean(axis=0)) > 10 * np.ptp(green.mean(axis=1)), resize_filter


def test_windows_of_other_samplers_end_at_the_last_frame() -> None:
    """Outside 3D-ResNets the tail window ends at the last frame (overlapping its predecessor);
    schema-1 recipes keep dropping the tail."""
    info = video_info(100)
    recipe = UNIFORM.model_copy(update={"clip_len": 16, "frame_interval": 1})
    ended = plan_views(
        info, recipe.model_copy(update={"window_tail": "end"}), windows=True, limits=LIMITS
    )
    assert [c.slots[0] for c in ended.clips] == [0, 16, 32, 48, 64, 80, 84]
    assert ended.clips[-1].end_s == pytest.approx(100 / 30)
    dropped = plan_views(info, recipe, windows=True, limits=LIMITS)
    assert [c.slots[0] for c in dropped.clips] == [0, 16, 32, 48, 64, 80]
    short = plan_views(
        replace(info, num_frames=10, duration_s=10 / 30),
        recipe.model_copy(update={"window_tail": "end"}),
        windows=True,
        limits=LIMITS,
    )
    assert [c.slots for c in short.clips] == [(*range(10), *range(6))]


def test_sliding_protocols_count_against_the_window_limit() -> None:
    with pytest.raises(Exception, match="windows over the limit"):
        plan_views(video_info(300), HARA, limits=VideoLimits(max_windows=18))
    assert len(plan_views(video_info(300), HARA, limits=VideoLimits(max_windows=19)).clips) == 19
