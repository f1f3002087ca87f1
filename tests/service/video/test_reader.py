"""The sampled frames are exactly those of a plain sequential decode of every frame.

Whatever the reader does to get there (the container's index instead of a packet scan, one
open for index and read, seeks, skipping frames nothing refers to, the spatial plan made on
the first frame read), the pixels must be those of decoding the file front to back, taking
the frame on screen at each planned moment: the next frame present where one is damaged, the
last one where the data ends early.
"""

from __future__ import annotations

import os

import av
import numpy as np
import pytest

from model_store.spec import Recipe, Sampling
from service.video import DecodeOptions, VideoLimits, index_video, sample_frames
from service.video import index as index_module
from service.video.pixels import FrameConverter
from tests.service.video import media

LIMITS = VideoLimits()

CLIPS = media.raw_recipe(clip_len=8)  # two 8-frame clips, centre crop 32: what most models ask
SPREAD = CLIPS.model_copy(  # 12 frames spread over the whole video, TSN-style
    update={"sampling": Sampling.SEGMENTS, "clip_len": 12, "frame_interval": 1, "num_clips": 1}
)
THREE_CROPS = CLIPS.model_copy(update={"num_crops": 3, "short_side": 40})
EXACT_VIDEOS = [
    "textured.mp4",
    "textured.mkv",
    "textured_hevc.mp4",
    "h264.mp4",
    "vp9.webm",
    "mpeg4.avi",
    "mjpeg.avi",
    "h264_bframes.avi",
    "vfr.mp4",
    "vfr.mkv",
    "rotated.mp4",
    "faststart_cut.mp4",
    "h264_cut.mkv",
    "damaged.avi",
    "one_frame.mp4",
]


def sequential_frames(path: os.PathLike[str], sampled, recipe: Recipe) -> np.ndarray:
    """The sampled frames as decoding every frame, front to back, one thread, gives them."""
    index = index_video(path, LIMITS).index  # from the packets, never the container's index
    moments = np.array([clip.times_s for clip in sampled.plan.clips])
    wanted = np.unique(index.position_of(moments))
    convert = FrameConverter(sampled.plan, recipe)
    decoded: list[tuple[int, av.VideoFrame]] = []
    with av.open(os.fspath(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            try:
                frames = stream.codec_context.decode(packet if packet.size else None)
            except av.error.InvalidDataError:
                continue  # a broken packet costs its frames
            decoded.extend((len(decoded), frame) for frame in frames)
    stamps = [frame.pts for _, frame in decoded]
    if index.by_pts and None not in stamps and stamps == sorted(set(stamps)):
        decoded = [(int(np.searchsorted(index.pts, f.pts)), f) for _, f in decoded]
    positions = np.array([p for p, _ in decoded])
    expected = []
    for target in wanted:
        later = np.flatnonzero(positions >= target)
        _, frame = decoded[later[0]] if len(later) else decoded[-1]
        expected.append(convert(frame))
    return np.stack(expected)


@pytest.mark.parametrize("recipe", [CLIPS, SPREAD, THREE_CROPS], ids=["clips", "spread", "crops"])
@pytest.mark.parametrize("profile", ["accurate", "fast"])
@pytest.mark.parametrize("name", EXACT_VIDEOS)
def test_sampled_frames_equal_a_sequential_decode(videos, name, profile, recipe) -> None:
    sampled = sample_frames(videos[name], recipe, DecodeOptions(profile=profile), LIMITS)
    expected = sequential_frames(videos[name], sampled, recipe)
    assert sampled.frames.shape == expected.shape
    np.testing.assert_array_equal(sampled.frames, expected)


@pytest.mark.parametrize("threads", [0, 1])
@pytest.mark.parametrize("name", ["textured.mp4", "textured_hevc.mp4"])
def test_frames_nothing_refers_to_are_not_decoded(videos, name: str, threads: int) -> None:
    """On the way to a target, non-reference B-frames are skipped: fewer frames decoded than
    lie between each target and the keyframe before it, and the same pixels."""
    options = DecodeOptions(decoder_threads=threads)
    sampled = sample_frames(videos[name], SPREAD, options, LIMITS)
    np.testing.assert_array_equal(sampled.frames, sequential_frames(videos[name], sampled, SPREAD))
    index = index_video(videos[name], LIMITS).index
    targets = np.unique(index.position_of(np.array(sampled.plan.clips[0].times_s)))
    keyframes = np.searchsorted(index.pts, index.keyframes)
    on_the_way = set()
    for target in targets:
        on_the_way.update(range(keyframes[keyframes <= target].max(), target + 1))
    assert sampled.frames_decoded < len(on_the_way)


def test_a_wrong_container_index_falls_back_to_a_packet_scan(videos, monkeypatch) -> None:
    """A decoded frame whose timestamp the container's index does not list proves the index
    wrong for this file: the job scans the packets and reads again, exactly."""
    real = index_module._first_presentation

    def one_tick_late(container, stream, head):
        start, reordered = real(container, stream, head)
        return start + 1, reordered

    monkeypatch.setattr(index_module, "_first_presentation", one_tick_late)
    sampled = sample_frames(videos["textured.mp4"], CLIPS, DecodeOptions(), LIMITS)
    np.testing.assert_array_equal(
        sampled.frames, sequential_frames(videos["textured.mp4"], sampled, CLIPS)
    )
