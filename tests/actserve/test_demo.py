"""The synthetic action generator and the demo commands."""

from __future__ import annotations

import functools

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from actserve.cli import app
from actserve.demo import train
from actserve.demo.synthetic import ACTIONS, make_scene, render_frames, render_video
from model_store import ModelStore

runner = CliRunner()


def test_videos_are_deterministic_per_seed() -> None:
    first = render_video("growing", seed=3, height=48, width=64)
    assert first.shape == (48, 48, 64, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, render_video("growing", seed=3, height=48, width=64))
    assert not np.array_equal(first, render_video("growing", seed=4, height=48, width=64))


def _object_centre(scene, t: int) -> tuple[float, float]:
    """Where the scene's object is, from the difference to the same scene without it."""
    still = render_frames(scene, np.array([t]), 96, 128)[0].astype(float)
    empty = render_frames(type(scene)(**{**scene.__dict__, "size": 1e-9}), np.array([t]), 96, 128)[
        0
    ].astype(float)
    mask = np.abs(still - empty).sum(-1) > 60
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean()), int(mask.sum())


@pytest.mark.parametrize(
    ("action", "check"),
    [
        ("moving left", lambda a, b: b[0] < a[0] - 10),
        ("moving right", lambda a, b: b[0] > a[0] + 10),
        ("moving up", lambda a, b: b[1] < a[1] - 10),
        ("moving down", lambda a, b: b[1] > a[1] + 10),
        ("growing", lambda a, b: b[2] > 2 * a[2]),
        ("shrinking", lambda a, b: b[2] < a[2] / 2),
        ("standing still", lambda a, b: abs(b[0] - a[0]) < 2 and abs(b[1] - a[1]) < 2),
    ],
)
def test_each_action_changes_the_object_as_named(action, check) -> None:
    scene = make_scene(action, np.random.default_rng(7))
    assert check(_object_centre(scene, 0), _object_centre(scene, 47))


def test_blinking_objects_disappear_and_come_back() -> None:
    scene = make_scene("blinking", np.random.default_rng(1))
    period = scene.blink_period
    frames = render_frames(scene, np.arange(period), 96, 128).astype(float)
    on, off = frames[0], frames[period - 1]
    assert np.abs(on - off).sum(-1).max() > 60  # the object is there, then not


def test_unknown_action_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown action 'dancing'"):
        make_scene("dancing", np.random.default_rng(0))
    assert len(ACTIONS) == 10


@pytest.mark.parametrize(("suffix", "codec"), [(".mp4", "h264"), (".webm", "vp9")])
def test_demo_video_command_writes_a_playable_file(tmp_path, suffix, codec) -> None:
    out = tmp_path / f"clip{suffix}"
    result = runner.invoke(
        app, ["demo-video", "rotating clockwise", str(out), "--width", "96", "--height", "64"]
    )
    assert result.exit_code == 0, result.output
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == codec and (stream.width, stream.height) == (96, 64)
        assert sum(1 for _ in container.decode(stream)) == 48
    bad = runner.invoke(app, ["demo-video", "juggling", str(out)])
    assert bad.exit_code == 2 and "choose one of" in bad.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--steps", "5"], "steps must be at least 10"),
        (["--seed", "-1"], "seed must be 0 or more, not -1"),
        (["--min-accuracy", "1.5"], "Invalid value for '--min-accuracy'"),
        (["--store-is-a-file"], "is a file, not a model store directory"),
    ],
)
def test_train_demo_refuses_bad_arguments_before_training(tmp_path, args, says) -> None:
    store = tmp_path / "store"
    if args == ["--store-is-a-file"]:
        store.write_text("")
        args = []
    result = runner.invoke(app, ["train-demo", "--store", str(store), *args])
    assert result.exit_code == 2 and says in result.output, result.output
    assert not store.is_dir()


@pytest.mark.slow
def test_train_demo_publishes_a_poor_model_only_when_forced(tmp_path, monkeypatch) -> None:
    # A few real steps of one clip each: far below the 90% needed to publish.
    small = functools.partial(train.TrainingConfig, batch_size=1, eval_clips=10)
    monkeypatch.setattr(train, "TrainingConfig", small)
    store = tmp_path / "store"
    refused = runner.invoke(app, ["train-demo", "--store", str(store), "--steps", "20"])
    assert refused.exit_code == 1, refused.output  # 20 steps used to crash OneCycleLR
    assert "is below the 90.0% required to publish, so nothing was published" in refused.output
    assert not store.exists()
    forced = runner.invoke(app, ["train-demo", "--store", str(store), "--steps", "10", "--force"])
    assert forced.exit_code == 0, forced.output
    assert "(forced)" in forced.output and "published demo-actions version 1" in forced.output
    manifest = ModelStore(store).resolve("demo-actions")
    assert ModelStore(store).verify("demo-actions", 1) == manifest
    assert "10 steps of 1 clips" in manifest.description
