"""Shot boundaries on videos with known cuts: hard cuts at their frame, a cross-fade within
it, a long video scanned a stretch at a time like in one pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from actserve.demo.synthetic import FPS, render_sequence, render_video, write_video
from service.video import VideoLimits
from service.video.shots import ShotBoundary, ShotRule, confidence, detect_shots, shot_spans

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


def test_a_hard_cut_is_found_at_its_frame_and_a_cross_fade_within_it(edited: Path) -> None:
    hard = detect_shots(edited, VideoLimits(), ShotRule())
    assert [(b.kind, b.time_s) for b in hard.boundaries] == [("cut", 2.0)]
    both = detect_shots(edited, VideoLimits(), ShotRule(gradual_s=0.5))
    cut, fade = both.boundaries
    assert (cut.kind, cut.time_s) == ("cut", 2.0)
    fade_start, fade_end = (48 + 60 - FADE) / FPS, (48 + 60) / FPS
    assert fade.kind == "gradual" and fade_start <= fade.time_s <= fade_end
    assert both.frames_decoded == 48 + 60 + 60 - FADE and both.ended


def test_cuts_every_two_seconds_all_found_in_stretches_as_in_one_pass(tmp_path: Path) -> None:
    actions = ["moving up", "blinking"]
    path = tmp_path / "cuts.mp4"
    frames = render_sequence(actions, seconds_each=8, seed=5, height=72, width=96, shot_s=2)
    write_video(frames, str(path))
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
