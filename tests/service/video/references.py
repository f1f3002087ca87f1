"""The reference code's test pipelines, re-written for the tests from the reference repositories.

Each function follows one reference function line by line (named in its docstring, at the
commits of /work/shared/docs/protocols.md), with the reference's own libraries where the
reference used them: torch for PySlowFast's linspace, interpolation and crops, OpenCV for
mmcv and Caffe, Pillow for torchvision's PIL transforms, PyAV's swscale for the torchvision
video reader and the ffmpeg CLI. Nothing here imports actserve's sampling or pixel code: the
tests compare actserve's plan and views against these.

Frames are decoded once, all of them, with PyAV (`decode_all`), as a research loader would.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import av
import cv2
import numpy as np
import torch
import torch.nn.functional as F
from av.video.reformatter import Interpolation
from PIL import Image

# --------------------------------------------------------------------------- decoding


def decode_all(path: Path, convert: Callable[[av.VideoFrame], np.ndarray] | None = None) -> list:
    """Every frame in presentation order, as (H, W, 3) uint8 RGB (or `convert(frame)`)."""
    with av.open(str(path)) as container:
        frames = container.decode(video=0)
        return [convert(f) if convert else f.to_ndarray(format="rgb24") for f in frames]


def swscale_rgb(
    frame: av.VideoFrame, width: int, height: int, interpolation: Interpolation
) -> np.ndarray:
    """One swscale pass from the decoded frame to packed RGB24 at width × height."""
    scaled = frame.reformat(
        width=width,
        height=height,
        format="rgb24",
        interpolation=interpolation,
        src_color_range=frame.color_range or None,
    )
    return scaled.to_ndarray()


def average_fps(path: Path) -> float:
    """`float(container.streams.video[0].average_rate)`, PySlowFast's pyav fps."""
    with av.open(str(path)) as container:
        return float(container.streams.video[0].average_rate)


# --------------------------------------------------------------------------- mmaction2


def mmaction_sample_frames(
    total: int, clip_len: int, frame_interval: int, num_clips: int, twice_sample: bool = False
) -> np.ndarray:
    """mmaction2 `SampleFrames.transform` in test mode, no target_fps: (clips, clip_len)."""
    ori_clip_len = (clip_len - 1) * frame_interval + 1
    if clip_len == 1:  # _get_test_clips, 2D recognizer
        avg_interval = total / float(num_clips)
        base_offsets = np.arange(num_clips) * avg_interval
        clip_offsets = base_offsets + avg_interval / 2.0
        if twice_sample:
            clip_offsets = np.concatenate([clip_offsets, base_offsets])
    else:  # 3D recognizer
        max_offset = max(total - ori_clip_len, 0)
        if num_clips > 1:
            offset_between = max_offset / float(num_clips - 1)
            clip_offsets = np.round(np.arange(num_clips) * offset_between)
        else:
            clip_offsets = np.array([max_offset // 2])
    frame_inds = clip_offsets[:, None] + np.arange(clip_len)[None, :] * frame_interval
    frame_inds = np.concatenate(frame_inds).reshape((-1, clip_len))
    frame_inds = np.mod(frame_inds, total)  # out_of_bound_opt='loop'
    return frame_inds.astype(np.int32)  # results['frame_inds'], one row per clip


def mmaction_tsm_views(total: int, num_segments: int) -> np.ndarray:
    """The TSM test config (clip_len=1, num_clips=8, twice_sample): two views of 8 frames."""
    return mmaction_sample_frames(total, 1, 1, num_segments, twice_sample=True).reshape(
        2, num_segments
    )


def mmcv_rescale(image: np.ndarray, short: int) -> np.ndarray:
    """mmaction2 `Resize(scale=(-1, short))`: mmcv `rescale_size` then `imresize` (cv2
    INTER_LINEAR)."""
    h, w = image.shape[:2]
    max_long_edge, max_short_edge = np.inf, short
    scale_factor = min(max_long_edge / max(h, w), max_short_edge / min(h, w))
    new_w, new_h = int(w * float(scale_factor) + 0.5), int(h * float(scale_factor) + 0.5)
    return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)


def mmaction_three_crop(frames: np.ndarray, crop: int) -> list[np.ndarray]:
    """mmaction2 `ThreeCrop.transform`: left, right, middle (or top, down, middle)."""
    img_h, img_w = frames.shape[1:3]
    assert crop in (img_h, img_w)
    if crop == img_h:
        w_step = (img_w - crop) // 2
        offsets = [(0, 0), (2 * w_step, 0), (w_step, 0)]
    else:
        h_step = (img_h - crop) // 2
        offsets = [(0, 0), (0, 2 * h_step), (0, h_step)]
    return [frames[:, y : y + crop, x : x + crop] for x, y in offsets]


def mmaction_centre_crop(frames: np.ndarray, crop: int) -> np.ndarray:
    """mmaction2 `CenterCrop.transform`."""
    img_h, img_w = frames.shape[1:3]
    left, top = (img_w - crop) // 2, (img_h - crop) // 2
    return frames[:, top : top + crop, left : left + crop]


# --------------------------------------------------------------------------- PySlowFast


def slowfast_clip_size(sampling_rate: int, num_frames: int, fps: float, target_fps=30) -> float:
    """`np.maximum(1.0, sampling_rate * num_frames / target_fps * fps)` (decoder.decode)."""
    return float(np.maximum(1.0, sampling_rate * num_frames / target_fps * fps))


def slowfast_get_start_end_idx(
    video_size: int, clip_size: float, clip_idx: int, num_clips_uniform: int
) -> tuple[float, float]:
    """decoder.get_start_end_idx, test branch, use_offset=False."""
    delta = max(video_size - clip_size, 0)
    start_idx = delta * clip_idx / num_clips_uniform
    return start_idx, start_idx + clip_size - 1


def slowfast_temporal_sampling(
    num_video_frames: int, start_idx: float, end_idx: float, num_samples: int
) -> np.ndarray:
    """decoder.temporal_sampling's index: torch.linspace, clamp, .long()."""
    index = torch.linspace(start_idx, end_idx, num_samples)
    return torch.clamp(index, 0, num_video_frames - 1).long().numpy()


def slowfast_clip_indices(
    total: int, num_frames: int, sampling_rate: int, fps: float, num_clips: int, clip_idx: int
) -> np.ndarray:
    """One test clip of decoder.decode on a fully decoded video (`decode_all_video`)."""
    clip_size = slowfast_clip_size(sampling_rate, num_frames, fps)
    start, end = slowfast_get_start_end_idx(total, clip_size, clip_idx, num_clips)
    return slowfast_temporal_sampling(total, start, end, num_frames)


def slowfast_ssv2_seq(video_length: int, num_frames: int) -> list[int]:
    """ssv2.get_seq_frames, test mode with one clip."""
    seg_size = float(video_length - 1) / num_frames
    seq = []
    for i in range(num_frames):
        start = int(np.round(seg_size * i))
        end = int(np.round(seg_size * (i + 1)))
        seq.append((start + end) // 2)
    return seq


def torchvision_reader_frame(frame: av.VideoFrame, min_dimension: int) -> np.ndarray:
    """The torchvision video reader's `video_min_dimension` scaling: sizes from its
    `setFormatDimensions` (C `round`), one swscale pass to RGB24 with SWS_AREA."""
    src_w, src_h = frame.width, frame.height
    if src_w > src_h:
        dest_h, dest_w = min_dimension, math.floor(src_w * min_dimension / src_h + 0.5)
    else:
        dest_w, dest_h = min_dimension, math.floor(src_h * min_dimension / src_w + 0.5)
    return swscale_rgb(frame, dest_w, dest_h, Interpolation.AREA)


def slowfast_tensor_normalize(frames: torch.Tensor, mean, std) -> torch.Tensor:
    """utils.tensor_normalize on uint8 (T, H, W, C)."""
    tensor = frames.float() / 255.0
    return (tensor - torch.tensor(mean)) / torch.tensor(std)


def slowfast_short_side_scale(images: torch.Tensor, size: int) -> torch.Tensor:
    """transform.random_short_side_scale_jitter with min_size == max_size (test)."""
    height, width = images.shape[2], images.shape[3]
    if (width <= height and width == size) or (height <= width and height == size):
        return images
    new_width = new_height = size
    if width < height:
        new_height = math.floor((float(height) / width) * size)
    else:
        new_width = math.floor((float(width) / height) * size)
    return F.interpolate(images, size=(new_height, new_width), mode="bilinear", align_corners=False)


def slowfast_uniform_crop(images: torch.Tensor, size: int, spatial_idx: int) -> torch.Tensor:
    """transform.uniform_crop on (C, T, H, W) (or T, C, H, W): only the last two axes count."""
    height, width = images.shape[2], images.shape[3]
    y_offset = math.ceil((height - size) / 2)
    x_offset = math.ceil((width - size) / 2)
    if height > width:
        if spatial_idx == 0:
            y_offset = 0
        elif spatial_idx == 2:
            y_offset = height - size
    else:
        if spatial_idx == 0:
            x_offset = 0
        elif spatial_idx == 2:
            x_offset = width - size
    return images[:, :, y_offset : y_offset + size, x_offset : x_offset + size]


# --------------------------------------------------------------------------- 3D-ResNets-PyTorch


def hara_loop_padding(frame_indices: list[int], size: int) -> list[int]:
    """temporal_transforms.LoopPadding."""
    out = frame_indices
    for index in out:
        if len(out) >= size:
            break
        out.append(index)
    return out


def hara_sliding_window(frame_indices: list[int], size: int, stride: int = 0) -> list[list[int]]:
    """temporal_transforms.SlidingWindow (master)."""
    stride = stride or size
    out = []
    for begin_index in frame_indices[::stride]:
        end_index = min(frame_indices[-1] + 1, begin_index + size)
        sample = list(range(begin_index, end_index))
        if len(sample) < size:
            out.append(hara_loop_padding(sample, size))
            break
        out.append(sample)
    return out


def hara_master_windows(n_frames: int, size: int = 16) -> list[list[int]]:
    """Inference windows of the master branch, 0-based (its frame_indices are 1..n_frames)."""
    windows = hara_sliding_window(list(range(1, n_frames + 1)), size)
    return [[i - 1 for i in window] for window in windows]


def hara_2018_windows(n_frames: int, sample_duration: int = 16) -> list[list[int]]:
    """CVPR2018 datasets/kinetics.py make_dataset (n_samples_for_each_video=0), then the
    test LoopPadding, 0-based."""
    step = sample_duration
    windows = []
    for j in range(1, n_frames, step):
        sample = list(range(j, min(n_frames + 1, j + sample_duration)))
        windows.append([i - 1 for i in hara_loop_padding(copy.copy(sample), sample_duration)])
    return windows


def ffmpeg_scale_240(frame: av.VideoFrame, size: int, height_only: bool) -> np.ndarray:
    """generate_video_jpgs.py's `-vf scale=-1:240` (or `240:-1` for portrait in master; the
    2018 script always scales the height): av_rescale rounding, the CLI's bicubic scaler."""
    w, h = frame.width, frame.height
    if height_only or w > h:
        out_h, out_w = size, (size * w + h // 2) // h
    else:
        out_w, out_h = size, (size * h + w // 2) // w
    return swscale_rgb(frame, out_w, out_h, Interpolation.BICUBIC)


def torchvision_resize(image: np.ndarray, size: int) -> np.ndarray:
    """torchvision `Resize(size)` on a PIL image: the short side to `size`, the long side
    `int(size * long / short)`, Pillow's bilinear filter; untouched when already there."""
    img = Image.fromarray(image)
    w, h = img.size
    if (w <= h and w == size) or (h <= w and h == size):
        return np.asarray(img)
    if w < h:
        return np.asarray(img.resize((size, int(size * h / w)), Image.BILINEAR))
    return np.asarray(img.resize((int(size * w / h), size), Image.BILINEAR))


def torchvision_centre_crop(image: np.ndarray, crop: int) -> np.ndarray:
    """torchvision `CenterCrop(crop)`: `int(round((L - crop) / 2.0))` on each side."""
    h, w = image.shape[:2]
    top, left = round((h - crop) / 2.0), round((w - crop) / 2.0)
    return image[top : top + crop, left : left + crop]


# --------------------------------------------------------------------------- Caffe (P3D)


def caffe_p3d_frame(rgb: np.ndarray, height: int, width: int, crop: int) -> np.ndarray:
    """P3D's Caffe input: BGR (OpenCV), cv::resize to height × width (bilinear, aspect not
    kept), centre crop at ((h - crop) / 2, (w - crop) / 2) in integer arithmetic."""
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    resized = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_LINEAR)
    top, left = (height - crop) // 2, (width - crop) // 2
    return resized[top : top + crop, left : left + crop]


def opencv_frames(path: Path) -> list[np.ndarray]:
    """Every frame as the Caffe-era loaders read it: `cv2.VideoCapture`, packed BGR from
    FFmpeg's own conversion, turned upright by the display rotation (OpenCV's default)."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return frames
            frames.append(frame)
    finally:
        capture.release()


def caffe_p3d_views(path: Path, recipe) -> tuple[np.ndarray, np.ndarray]:
    """P3D's test views from OpenCV's frames: mmaction2's uniform clips, each displayed BGR
    frame stretched to `stretch_to` and centre-cropped (`caffe_p3d_frame` without the flip)."""
    frames = [np.ascontiguousarray(f[..., ::-1]) for f in opencv_frames(path)]
    rows = mmaction_sample_frames(
        len(frames), recipe.clip_len, recipe.frame_interval, recipe.num_clips
    )
    height, width = recipe.stretch_to
    views = [
        np.stack([caffe_p3d_frame(frames[i], height, width, recipe.crop_size) for i in row])
        for row in rows
    ]
    return normalise(views, recipe.mean, recipe.std, recipe.pixel_scale), np.arange(len(rows))


# --------------------------------------------------------------------------- scoring


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def normalise(views: Sequence[np.ndarray], mean, std, scale: float) -> np.ndarray:
    """(V, T, H, W, C) pixels on 0..255 → (V, C, T, H, W) float32 `(x / 255 · scale − mean) /
    std` (mmaction2's data preprocessor and torchvision's ToTensor + Normalize alike)."""
    x = np.stack(views).astype(np.float32) / np.float32(255.0) * np.float32(scale)
    x = (x - np.array(mean, np.float32)) / np.array(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 4, 1, 2, 3), dtype=np.float32)


# --------------------------------------------------------------------------- whole pipelines
#
# A family's test pipeline from decoded frames to normalised views, (V, C, T, H, W) float32,
# clip-major, crops in actserve's order (near, centre, far), plus each view's clip. The sizes,
# means and counts come from the recipe under test (its parameters); everything that decides
# which pixels land where is the reference's, above.

PIPELINES = (
    "mmaction",
    "mmaction_tsm",
    "slowfast_torchvision",
    "slowfast_pyav",
    "hara",
    "hara_2018",
    "caffe_p3d",
)


def reference_views(
    pipeline: str, path: Path, recipe, *, windows: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The views the reference builds for `path` (every clip and crop of its test protocol),
    or, with `windows`, for back-to-back windows (`per_clip`, see `window_starts`)."""
    mean, std, scale = recipe.mean, recipe.std, recipe.pixel_scale
    if pipeline.startswith("slowfast"):
        return _slowfast_views(pipeline, path, recipe, windows)
    if pipeline.startswith("hara"):
        pre = recipe.prescale.size
        height_only = pipeline == "hara_2018"
        frames = decode_all(path, lambda f: ffmpeg_scale_240(f, pre, height_only))
        count = len(frames)
        windows_of = hara_2018_windows if height_only else hara_master_windows
        rows = windows_of(count, recipe.clip_len)
        size, crop = recipe.short_side, recipe.crop_size
        views = [
            np.stack(
                [torchvision_centre_crop(torchvision_resize(frames[i], size), crop) for i in row]
            )
            for row in rows
        ]
        return normalise(views, mean, std, scale), np.arange(len(rows))
    frames = np.stack(decode_all(path))
    count = len(frames)
    if windows:
        rows = [_uniform_window(recipe, start, count) for start in window_starts(count, recipe)]
    elif pipeline == "mmaction_tsm":
        rows = mmaction_tsm_views(count, recipe.clip_len)
    else:
        rows = mmaction_sample_frames(
            count, recipe.clip_len, recipe.frame_interval, recipe.num_clips
        )
    views, clips = [], []
    for clip, row in enumerate(rows):
        if pipeline == "caffe_p3d":
            height, width = recipe.stretch_to
            crop = [caffe_p3d_frame(frames[i], height, width, recipe.crop_size) for i in row]
            views.append(np.stack(crop))
            clips.append(clip)
            continue
        resized = np.stack([mmcv_rescale(frames[i], recipe.short_side) for i in row])
        left, right, middle = mmaction_three_crop(resized, recipe.crop_size)
        views += [left, middle, right]
        clips += [clip] * 3
    return normalise(views, mean, std, scale), np.array(clips)


def window_starts(count: int, recipe, length: float | None = None) -> list[float]:
    """actserve's `per_clip` windows outside 3D-ResNets (the `end` tail), written out: one
    window every `length` frames, and when frames are left over, one more ending at the last
    frame; a video shorter than a window gets one window at its start."""
    length = length or recipe.clip_len * recipe.frame_interval
    full = math.floor(count / length + 1e-9)
    starts = [k * length for k in range(max(full, 1))]
    if full and count - full * length > 1e-6:
        starts.append(count - length)
    return starts


def _uniform_window(recipe, start: float, count: int) -> np.ndarray:
    """A window sampled like a clip: mmaction2's `start + arange(T) · interval` (modulo the
    frame count, its 'loop'), or one frame from the middle of each sub-segment for TSM."""
    steps = np.arange(recipe.clip_len) * recipe.frame_interval
    if recipe.sampling == "segments":
        steps = (steps + recipe.frame_interval / 2.0).astype(np.int64)
    return np.mod(int(start) + steps, count)


def _slowfast_views(
    pipeline: str, path: Path, recipe, windows: bool
) -> tuple[np.ndarray, np.ndarray]:
    crop, size = recipe.crop_size, recipe.short_side
    if pipeline == "slowfast_torchvision":
        frames = np.stack(decode_all(path, lambda f: torchvision_reader_frame(f, size)))
    else:  # pyav: frame.to_rgb().to_ndarray()
        frames = np.stack(decode_all(path, lambda f: f.to_rgb().to_ndarray()))
    count, fps = len(frames), average_fps(path)
    clip_size = slowfast_clip_size(recipe.frame_interval, recipe.clip_len, fps)
    if recipe.sampling == "slowfast_segments":
        rows = [slowfast_ssv2_seq(count, recipe.clip_len)]
    elif windows:
        rows = [
            slowfast_temporal_sampling(count, start, start + clip_size - 1, recipe.clip_len)
            for start in window_starts(count, recipe, clip_size)
        ]
    else:
        rows = [
            slowfast_clip_indices(
                count, recipe.clip_len, recipe.frame_interval, fps, recipe.num_clips, i
            )
            for i in range(recipe.num_clips)
        ]
    views, clips = [], []
    for clip, row in enumerate(rows):
        x = slowfast_tensor_normalize(torch.from_numpy(frames[row]), recipe.mean, recipe.std)
        x = slowfast_short_side_scale(x.permute(3, 0, 1, 2), size)  # C, T, H, W
        for spatial_idx in range(recipe.num_crops):
            views.append(slowfast_uniform_crop(x, crop, spatial_idx).numpy())
            clips.append(clip)
    return np.ascontiguousarray(np.stack(views), dtype=np.float32), np.array(clips)
