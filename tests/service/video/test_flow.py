"""TV-L1 flow stacks: known motion gives flow of the known direction and size, quantised as
dense_flow does, stacked in mmaction2's channel order; and a clear error without OpenCV."""

from __future__ import annotations

import sys

import av
import numpy as np
import pytest

from service.video import flow
from service.video.flow import flow_stack, quantise_flow, to_grey
from tests.service.video import media

#: Grey levels per pixel of motion at the default bound of 20 px: 255 / 40.
LEVELS_PER_PX = 255 / 40


def _level(px: float) -> float:
    return 127.5 + px * LEVELS_PER_PX


def _shifted(dx: int, dy: int, count: int, size: int = 64) -> np.ndarray:
    paint = media.moving_texture(dx, dy, seed=3)
    return np.stack([paint(i, size, size) for i in range(count)])


def _inner(stack: np.ndarray, border: int = 8) -> np.ndarray:
    """The stack away from the borders, where content enters or leaves the frame."""
    return stack[..., border:-border, border:-border].astype(np.float64)


def test_quantisation_is_dense_flows_rounded_linear_map() -> None:
    values = np.array([-25.0, -20.0, -10.0, -0.05, 0.0, 0.05, 3.0, 10.0, 20.0, 31.0])
    field = np.stack([values, -values], axis=-1)[None]  # (1, N, 2)
    x, y = quantise_flow(field, bound=20.0)[:, 0]
    assert x.tolist() == [0, 0, 64, 127, 128, 128, 147, 191, 255, 255]
    assert y.tolist() == [255, 255, 191, 128, 128, 127, 108, 64, 0, 0]
    assert quantise_flow(np.full((1, 1, 2), 4.0), bound=8.0)[:, 0, 0].tolist() == [191, 191]
    with pytest.raises(ValueError, match="bound must be positive"):
        quantise_flow(field, bound=0)


@pytest.mark.parametrize(("dx", "dy"), [(3, 0), (0, -2), (-2, 2)])
def test_known_motion_gives_its_direction_and_size(dx: int, dy: int) -> None:
    stack = flow_stack(_shifted(dx, dy, count=3))
    assert stack.shape == (2, 2, 64, 64) and stack.dtype == np.uint8
    x, y = np.median(_inner(stack), axis=(1, 2, 3))
    assert x == pytest.approx(_level(dx), abs=LEVELS_PER_PX * 0.3)
    assert y == pytest.approx(_level(dy), abs=LEVELS_PER_PX * 0.3)


def test_motion_past_the_bound_saturates() -> None:
    stack = flow_stack(_shifted(6, 0, count=2), bound=3.0)
    assert np.median(_inner(stack[0])) == 255
    assert np.median(_inner(stack[1])) == pytest.approx(128, abs=4)


def test_flow_of_an_encoded_video(tmp_path) -> None:
    """Frames through H.264 and back (what the service decodes) still move as painted."""
    path = media.write_video(
        tmp_path / "right_up.mp4", size=(96, 80), num_frames=5, painter=media.moving_texture(2, -1)
    )
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    stack = flow_stack(frames, channel_order="RGB")
    assert stack.shape == (2, 4, 80, 96)
    x, y = np.median(_inner(stack, border=12), axis=(1, 2, 3))
    assert x == pytest.approx(_level(2), abs=LEVELS_PER_PX * 0.4)
    assert y == pytest.approx(_level(-1), abs=LEVELS_PER_PX * 0.4)


def test_stacks_interleave_x_and_y_of_consecutive_fields() -> None:
    """frames_per_stack=2: step t holds (x, y) of field 2t, then (x, y) of field 2t + 1."""
    right = media.moving_texture(3, 0, seed=5)
    down = media.moving_texture(0, 3, seed=5)
    # 0 → 1 moves right, 1 → 2 moves down (frame 2 = frame 1 moved down by 3).
    frames = np.stack([right(0, 64, 64), right(1, 64, 64), np.roll(right(1, 64, 64), 3, axis=0)])
    assert not np.array_equal(frames[2], down(0, 64, 64))  # a different texture path
    stack = flow_stack(frames, frames_per_stack=2)
    assert stack.shape == (4, 1, 64, 64)
    x1, y1, x2, y2 = np.median(_inner(stack), axis=(1, 2, 3))
    assert x1 == pytest.approx(_level(3), abs=2) and y1 == pytest.approx(128, abs=2)
    assert x2 == pytest.approx(128, abs=2) and y2 == pytest.approx(_level(3), abs=2)


def test_each_distinct_pair_is_solved_once(monkeypatch) -> None:
    calls: list[int] = []
    real = flow.tvl1_flow

    def counted(first, second):
        calls.append(1)
        return real(first, second)

    monkeypatch.setattr(flow, "tvl1_flow", counted)
    grey = to_grey(_shifted(2, 0, count=3, size=48))
    fields, which = flow.solve_pairs(grey, np.array([[[0, 1], [1, 2]], [[0, 1], [0, 1]]]))
    assert fields.shape == (2, 2, 48, 48) and len(calls) == 2
    assert which.tolist() == [[0, 1], [0, 0]]


def test_pairs_follow_the_sampled_frames_and_stop_at_the_last_field() -> None:
    positions = np.array([[0, 1, 2], [7, 8, 9]])
    pairs = flow.flow_pairs(positions, num_frames=10)
    assert pairs.shape == (2, 3, 2)
    assert pairs[0].tolist() == [[0, 1], [1, 2], [2, 3]]
    assert pairs[1].tolist() == [[7, 8], [8, 9], [8, 9]]  # frame 9 is last: its field is 8 → 9
    stacked = flow.flow_pairs(np.array([[0, 4]]), num_frames=10, frames_per_stack=2)
    assert stacked[0].tolist() == [[0, 1], [1, 2], [4, 5], [5, 6]]
    with pytest.raises(ValueError, match="at least two frames; the video has 1"):
        flow.flow_pairs(np.array([[0, 0]]), num_frames=1)


def test_grey_is_luma_in_either_channel_order() -> None:
    rgb = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # red
    grey = to_grey(rgb, "RGB")
    assert grey.shape == (2, 4, 4) and int(grey[0, 0, 0]) == round(0.299 * 200)
    assert np.array_equal(to_grey(rgb[..., ::-1], "BGR"), grey)
    assert to_grey(grey) is grey


def test_missing_opencv_says_what_to_install(monkeypatch) -> None:
    flow.require_opencv.cache_clear()
    monkeypatch.setitem(sys.modules, "cv2", None)
    try:
        assert not flow.flow_available()
        with pytest.raises(ImportError, match=r"pip install 'actserve\[flow\]'"):
            flow_stack(_shifted(1, 0, count=2))
    finally:
        flow.require_opencv.cache_clear()
