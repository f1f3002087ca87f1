"""The decode budget: what a plan will cost is known from the index before anything is
decoded (keyframe distances counted), a plan over budget is refused with the limit named, and
a decode far slower than its size explains is stopped by the worker itself."""

from __future__ import annotations

import numpy as np
import pytest

import service.video.reader as reader_module
from model_store.spec import Recipe
from service.errors import DecodeTimeout, LimitExceeded
from service.video import DecodeOptions, VideoLimits, decode_video, index_video, sample_frames
from service.video.reader import DecodeBudget
from service.video.sampling import plan_views
from service.video.shots import ShotRule
from tests.service.video import media

LIMITS = VideoLimits()
#: 10 clips × 4 frames: targets spread over the whole video.
SPREAD = media.raw_recipe(num_clips=10)


def budget_of(path, recipe: Recipe = SPREAD) -> DecodeBudget:
    indexed = index_video(path, LIMITS)
    plan = plan_views(indexed.info, recipe, limits=LIMITS)
    wanted = np.unique(indexed.index.position_of(plan.times_s)).tolist()
    return DecodeBudget.of(indexed, wanted, LIMITS)


@pytest.mark.parametrize("name", ["mjpeg.avi", "one_gop.mp4", "h264.mkv"])
def test_the_budget_counts_the_frames_the_reader_decodes(videos, name: str) -> None:
    budget = budget_of(videos[name])
    sampled = sample_frames(videos[name], SPREAD, DecodeOptions(decoder_threads=1), LIMITS)
    if name == "h264.mkv":  # B-frames: the ones nothing refers to are skipped, not decoded
        assert budget.frames >= sampled.frames_decoded
    else:
        assert budget.frames == sampled.frames_decoded
    assert budget.pixels == budget.frames * sampled.info.width * sampled.info.height


def test_with_shots_the_budget_counts_the_short_gaps_decoded_through(videos) -> None:
    """Intra-only: every gap between targets could be seeked past; with shots asked for, the
    reader decodes through those under a second, and the budget says so."""
    path = videos["mjpeg.avi"]
    indexed = index_video(path, LIMITS)
    plan = plan_views(indexed.info, SPREAD, limits=LIMITS)
    wanted = np.unique(indexed.index.position_of(plan.times_s)).tolist()
    options = DecodeOptions(decoder_threads=1, shots=ShotRule())
    sampled = sample_frames(path, SPREAD, options, LIMITS)
    through = DecodeBudget.of(indexed, wanted, LIMITS, seek_past=round(indexed.info.fps))
    assert through.frames == sampled.frames_decoded > budget_of(path).frames


def test_keyframe_distance_is_what_costs(videos) -> None:
    """The same 40 targets: 40 frames from an intra-only file, most of 300 from one GOP."""
    intra, one_gop = budget_of(videos["mjpeg.avi"]), budget_of(videos["one_gop.mp4"])
    assert intra.frames <= 40 < 250 < one_gop.frames <= 300


def test_a_plan_over_budget_is_refused_before_decoding(videos) -> None:
    path = videos["one_gop.mp4"]
    cost = budget_of(path).pixels
    tight = VideoLimits(max_decode_pixels=cost - 1)
    with pytest.raises(LimitExceeded, match="^decode_pixels over the limit") as caught:
        decode_video(path, SPREAD, DecodeOptions(), tight)
    assert (caught.value.limit, caught.value.value, caught.value.maximum) == (
        "decode_pixels",
        cost,
        cost - 1,
    )
    assert "frames to decode of 64x48" in str(caught.value)
    # the fast profile's one clip costs less and passes
    decode_video(path, SPREAD, DecodeOptions(profile="fast"), tight)


def test_a_decode_slower_than_its_size_allows_is_stopped(videos, monkeypatch) -> None:
    monkeypatch.setattr(reader_module, "SLOWEST_PIXELS_PER_S", 1e18)  # allows ~0 s
    monkeypatch.setattr(reader_module, "LEAST_SECONDS", 0.0)
    with pytest.raises(DecodeTimeout, match="the time its size allows"):
        decode_video(videos["one_gop.mp4"], SPREAD, DecodeOptions(), LIMITS)
