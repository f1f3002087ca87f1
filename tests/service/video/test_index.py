"""The container's own index stands in for a packet scan only where it says the same."""

from __future__ import annotations

import os

import numpy as np
import pytest

from service.video import VideoLimits, index_video
from service.video.container import open_video
from service.video.index import index_container

LIMITS = VideoLimits()


def indexed(path: os.PathLike[str], *, trust_index: bool):
    with open_video(path, LIMITS) as (container, stream):
        return index_container(
            container, stream, os.stat(path).st_size, LIMITS, trust_index=trust_index
        )


@pytest.mark.parametrize(
    "name", ["textured.mp4", "textured_hevc.mp4", "h264.mp4", "mjpeg.avi", "odd_mpeg4.avi"]
)
def test_the_container_index_of_a_whole_constant_rate_file_equals_a_scan(videos, name) -> None:
    fast, scanned = (
        indexed(videos[name], trust_index=True),
        indexed(videos[name], trust_index=False),
    )
    assert fast.index.from_container and not scanned.index.from_container
    np.testing.assert_array_equal(fast.index.pts, scanned.index.pts)
    np.testing.assert_array_equal(fast.index.keyframes, scanned.index.keyframes)
    assert fast.index.time_base == scanned.index.time_base
    assert fast.info == scanned.info


@pytest.mark.parametrize(
    "name",
    [
        "vfr.mp4",  # variable rate: presentation times are not the decode times shifted
        "faststart_cut.mp4",  # truncated: the index lists frames past the end of the file
        "textured.mkv",  # Matroska lists keyframes only
        "vp9.webm",
        "mpeg4.avi",  # B-frames shown before the keyframe they follow in an AVI
    ],
)
def test_files_whose_index_cannot_be_trusted_are_scanned(videos, name: str) -> None:
    fast = indexed(videos[name], trust_index=True)
    assert not fast.index.from_container
    np.testing.assert_array_equal(fast.index.pts, index_video(videos[name], LIMITS).index.pts)


def test_indexing_decodes_nothing_and_leaves_rotation_to_the_first_frame(videos) -> None:
    fast = indexed(videos["rotated.mp4"], trust_index=True)
    assert fast.info.rotation == 0
    assert index_video(videos["rotated.mp4"], LIMITS).info.rotation == 90
