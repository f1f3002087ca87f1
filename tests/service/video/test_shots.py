"""Shot boundaries on videos with known cuts: hard cuts at their frame, a cross-fade within
it, a long video scanned a stretch at a time like in one pass, and the cuts found within the
views' own decode as a scan of their own finds them."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from actserve.demo.synthetic import FPS, render_sequence, render_video, write_video
from model_store.spec import Profile
from service.video import DecodeOptions, VideoLimits, plan_windows, sample_streams
from service.video.shots import ShotBoundary, ShotRule, confidence, detect_shots, shot_spans
from tests.service.video import media

FADE = 12  # frames


@pytest.fixture(scope="module")
def edited(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shot A (2 s) | hard cut | shot B (2.5 s) | 0.5 s cross-fade | shot C (2.5 s)."""
    a = render_video("moving left", seed=1, num_frames=48)
    b = render_video("rotating clockwise", seed=2, num_frames=60)
    c = render_video("growing", seed=3, num_frames=60)
    steps = (np.arange(1, FADE + 1) / (FADE + 1))[:, None, None, None]
    fade = (b[-FADE:] * (1 - steps) + c[:FADE] * steps).astype(np.uint8)
    path = tmp_path_factory.mktemp("shots") / "edited.mp4"
    write_video(np.concatenate([a, b[:-FADE], fade, c[FADE:]]), str(path))
    return path


@pytest.fixture(scope="module")
def cut_every_two_s(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 s of two motions, a hard cut every 2 s (x264 opens a keyframe at each)."""
    path = tmp_path_factory.mktemp("ride") / "cuts.mp4"
    actions = ["moving up", "blinking"]
    frames = render_sequence(actions, seconds_each=8, seed=5, height=72, width=96, shot_s=2)
    write_video(frames, str(path))
    return path


def test_a_hard_cut_is_found_at_its_frame_and_a_cross_fade_within_it(edited: Path) -> None:
    hard = detect_shots(edited, VideoLimits(), ShotRule())
    assert [(b.kind, b.time_s) for b in hard.boundaries] == [("cut", 2.0)]
    both = detect_shots(edited, VideoLimits(), ShotRule(gradual_s=0.5))
    cut, fade = both.boundaries
    assert (cut.kind, cut.time_s) == ("cut", 2.0)
    fade_start, fade_end = (48 + 60 - FADE) / FPS, (48 + 60) / FPS
    assert fade.kind == "gradual" and fade_start <= fade.time_s <= fade_end
    assert both.frames_decoded == 48 + 60 + 60 - FADE and both.ended


def test_cuts_every_two_seconds_all_found_in_stretches_as_in_one_pass(
    cut_every_two_s: Path,
) -> None:
    path = cut_every_two_s
    whole = detect_shots(path, VideoLimits(), ShotRule())
    assert [b.time_s for b in whole.boundaries] == pytest.approx([2, 4, 6, 8, 10, 12, 14])
    first = detect_shots(path, VideoLimits(), ShotRule(), 0.0, 7.0)
    rest = detect_shots(path, VideoLimits(), ShotRule(), 7.0, 60.0)
    assert not first.ended and rest.ended
    assert first.boundaries + rest.boundaries == whole.boundaries


def test_shots_cover_the_video_from_their_boundaries() -> None:
    cut = ShotBoundary(2.0, 30.0, "cut")
    fade = ShotBoundary(5.0, 9.0, "gradual")
    spans = shot_spans([fade, cut, ShotBoundary(9.5, 9.0, "cut")], duration_s=8.0)
    assert [(s, e) for s, e, _ in spans] == [(0.0, 2.0), (2.0, 5.0), (5.0, 8.0)]
    assert spans[0][2] is None and spans[1][2] == cut and spans[2][2] == fade
    assert confidence(cut) > confidence(fade) > 0.5


#: Three clips of 4 frames spread over the video: the reader seeks past most of it.
SPREAD = media.raw_recipe(num_clips=3)


def cuts(scan) -> list[tuple[str, float]]:
    return [(b.kind, b.time_s) for b in scan.boundaries]


def shots_read(path: Path, windows: bool, window_range=None):
    options = DecodeOptions(profile=Profile.ACCURATE, windows=windows, shots=ShotRule())
    (sampled,) = sample_streams(path, (SPREAD,), options, VideoLimits(), window_range)
    return sampled.shots


def test_the_windows_decode_finds_the_cuts_a_scan_finds_decoding_little_more(
    cut_every_two_s: Path,
) -> None:
    scan = detect_shots(cut_every_two_s, VideoLimits(), ShotRule())
    assert [b.time_s for b in scan.boundaries] == pytest.approx([2, 4, 6, 8, 10, 12, 14])
    windows = shots_read(cut_every_two_s, windows=True)
    assert cuts(windows) == cuts(scan)  # scores differ a little: other frames lie between
    scores = [b.score for b in scan.boundaries]
    assert [b.score for b in windows.boundaries] == pytest.approx(scores, rel=0.1)
    # The windows cover the video: only the tail past the last one is decoded again.
    assert windows.frames_decoded < scan.frames_decoded / 10
    spread = shots_read(cut_every_two_s, windows=False)  # seeks: the stretches between, scanned
    assert cuts(spread) == cuts(scan)
    assert spread.frames_decoded < scan.frames_decoded


def test_the_jobs_of_one_plan_report_each_cut_once(cut_every_two_s: Path) -> None:
    whole = shots_read(cut_every_two_s, windows=True)
    options = DecodeOptions(profile=Profile.ACCURATE, windows=True)
    count = len(plan_windows(cut_every_two_s, SPREAD, options, VideoLimits()).clips)
    bounds = [(0, count // 3), (count // 3, count // 2), (count // 2, count)]
    parts = [shots_read(cut_every_two_s, True, chunk) for chunk in bounds]
    assert [cut for part in parts for cut in cuts(part)] == cuts(whole)


def test_cut_times_count_from_the_first_frame(cut_every_two_s: Path, tmp_path: Path) -> None:
    """A stream whose clock starts at 10 s (as cameras' and broadcasts' do): the cuts are
    still 2 s, 4 s, ... into the video."""
    late_start = tmp_path / "cuts.mkv"
    with av.open(str(cut_every_two_s)) as source, av.open(str(late_start), "w") as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                late = round(10 / packet.time_base)
                packet.pts, packet.dts = packet.pts + late, packet.dts + late
                packet.stream = stream
                out.mux(packet)
    with av.open(str(late_start)) as check:
        assert check.streams.video[0].start_time * check.streams.video[0].time_base > 9
    times = [b.time_s for b in shots_read(late_start, windows=True).boundaries]
    assert times == pytest.approx([2, 4, 6, 8, 10, 12, 14], abs=0.5 / FPS)
