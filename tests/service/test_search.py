"""POST /index and POST /search on the bundled demo model: recordings of known motions are
indexed, a fresh clip of one motion finds that motion's stretches, a stored window finds its
like, a probe trained on two motions the model never saw finds them in the archive without
decoding it again, and bad searches get clear 4xx answers."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from actserve.demo.synthetic import NEW_ACTIONS, render_sequence, render_video, write_video
from actserve.probe import calibrate_open_set, extend_head, fit_probe
from exporters.head import export_head_to_store
from model_store import ModelStore, ProbeProvenance
from service.app import create_app
from service.search.spaces import linear_head
from service.settings import BUNDLED_STORE, Settings
from window_index import Space, WindowIndex, Windows

SECONDS_EACH = 4.0
UP_RIGHT, DOWN_LEFT = NEW_ACTIONS
#: What each indexed recording shows, 4 s a motion.
RECORDINGS = {
    "cam/0.mp4": ("moving left", UP_RIGHT, "growing"),
    "cam/1.mp4": ("growing", "moving left", DOWN_LEFT),
    "cam/2.mp4": (DOWN_LEFT, "blinking", "moving left"),
    "cam/3.mp4": ("blinking", UP_RIGHT, "rotating clockwise"),
}


def shown(video_id: str, start_s: float, end_s: float) -> str:
    """The motion a recording shows in the middle of [start_s, end_s]."""
    middle = (start_s + end_s) / 2
    return RECORDINGS[video_id][min(2, int(middle // SECONDS_EACH))]


def post_file(client: TestClient, url: str, path: Path, **params: object):
    with path.open("rb") as f:
        return client.post(url, params=params, files={"video": (path.name, f, "video/mp4")})


def clip(folder: Path, action: str, seed: int) -> Path:
    path = folder / f"{action.replace(' ', '-')}-{seed}.mp4"
    write_video(render_video(action, seed=seed, height=120, width=160), str(path))
    return path


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Path]]:
    """A service over a writable copy of the bundled store, its index holding RECORDINGS."""
    root = tmp_path_factory.mktemp("search")
    store = root / "store"
    shutil.copytree(BUNDLED_STORE, store)
    for path in store.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    settings = Settings(store=store, index_dir=root / "index", decode_workers=2, max_delay_ms=2)
    with TestClient(create_app(settings)) as client:
        for n, (video_id, motions) in enumerate(RECORDINGS.items()):
            path = root / f"recording-{n}.mp4"
            frames = render_sequence(motions, seconds_each=SECONDS_EACH, seed=31_000 + n)
            write_video(frames, str(path))
            answer = post_file(client, "/index", path, video_id=video_id, profile="fast")
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["index"] == "demo-actions@1" and body["windows"] == 9  # 12 s / 1.33 s
        yield client, root


def test_a_clip_finds_the_stretches_of_its_motion(indexed) -> None:
    client, root = indexed
    answer = post_file(client, "/search", clip(root, "moving left", 41_000), top_k=3)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["query"] == "clip" and body["index"] == "demo-actions@1"
    found = [
        (m["video_id"], shown(m["video_id"], m["start_s"], m["end_s"])) for m in body["moments"]
    ]
    assert sorted(found) == [(v, "moving left") for v in ("cam/0.mp4", "cam/1.mp4", "cam/2.mp4")]
    first = body["moments"][0]
    assert first["end_s"] - first["start_s"] >= 2.5 and first["windows"] >= 2  # windows merged
    assert body["timings"]["embed"]["decode_ms"] > 0


def test_a_stored_window_finds_its_like_and_filters_apply(indexed) -> None:
    client, _ = indexed
    answer = client.post("/search", params={"video_id": "cam/0.mp4", "at_s": 2.0, "top_k": 2})
    assert answer.status_code == 200, answer.text
    body = answer.json()  # cam/0 shows moving left from 0 to 4 s: its own moment is left out
    assert body["query"] == "window" and body["window"][0] <= 2.0 <= body["window"][1]
    found = [
        (m["video_id"], shown(m["video_id"], m["start_s"], m["end_s"])) for m in body["moments"]
    ]
    assert sorted(found) == [("cam/1.mp4", "moving left"), ("cam/2.mp4", "moving left")]
    only = client.post(
        "/search",
        params={"video_id": "cam/0.mp4", "at_s": 2.0, "in_video": "cam/2.mp4", "to_s": 4.0},
    ).json()
    assert only["moments"] and all(
        m["video_id"] == "cam/2.mp4" and m["start_s"] < 4.0 for m in only["moments"]
    )


def test_bad_searches_are_refused_clearly(indexed) -> None:
    client, root = indexed
    cases = [
        ({}, 400, "nothing to search by"),
        ({"video_id": "cam/0.mp4"}, 400, "needs at_s"),
        ({"video_id": "cam/9.mp4", "at_s": 1}, 404, "no windows of video 'cam/9.mp4'"),
        ({"video_id": "cam/0.mp4", "at_s": 99}, 404, "no window at 99"),
        ({"model": "demo-actions", "version": 7, "video_id": "cam/0.mp4", "at_s": 1}, 404, ""),
        ({"video_id": "cam/0.mp4", "at_s": 1, "from_s": 5, "to_s": 2}, 400, "after from_s"),
        ({"video_id": "cam/0.mp4", "at_s": 1, "top_k": 5000}, 400, "over the limit"),
        ({"top_k": 0}, 400, "top_k"),
    ]
    for params, status, message in cases:
        answer = client.post("/search", params=params)
        assert answer.status_code == status, (params, answer.text)
        assert message in answer.json()["message"]
    not_a_video = root / "notes.mp4"
    not_a_video.write_bytes(b"not a video at all" * 100)
    assert post_file(client, "/search", not_a_video).status_code == 415
    assert post_file(client, "/index", not_a_video, video_id="x").status_code == 415
    missing_id = post_file(client, "/index", clip(root, "growing", 1))
    assert missing_id.status_code == 400 and "video_id" in missing_id.json()["message"]


def test_listing_and_deleting(indexed) -> None:
    client, root = indexed
    listing = client.get("/index").json()
    assert listing["indexes"] == [
        {"model": "demo-actions", "version": 1, "windows": 36, "videos": 4}
    ]
    path = clip(root, "shrinking", 3)
    assert post_file(client, "/index", path, video_id="extra").status_code == 200
    assert client.delete("/index/videos/extra").json()["removed"] == [
        {"model": "demo-actions", "version": 1, "windows": 1}
    ]
    assert client.delete("/index/videos/extra").status_code == 404


def test_a_probe_finds_new_motions_without_decoding_the_archive_then_another_model(indexed) -> None:
    client, root = indexed
    x, y = [], []
    for label, action in enumerate(NEW_ACTIONS):
        for seed in range(5):
            path = clip(root, action, 51_000 + 10 * label + seed)
            answer = post_file(client, "/embed", path, per_window="true", profile="fast")
            x += [window["values"] for window in answer.json()["windows"]]  # as indexed
            y += [label] * len(answer.json()["windows"])
    x, y = np.array(x), np.array(y)
    fit = fit_probe(x, y, folds=5)
    reject = calibrate_open_set(x, y, folds=5)
    store = ModelStore(client.app.state.settings.store)
    base = store.resolve("demo-actions")
    # --extend: windows of the model's own motions keep going to its own classes.
    weight, bias = extend_head(fit, *linear_head(store, base), x)

    export_head_to_store(
        store,
        base,
        store.version_dir(base.name, base.version),
        weight,
        bias,
        (*base.spec.labels, *NEW_ACTIONS),
        name="new-motions",
        probe=ProbeProvenance(
            base_model=base.name,
            base_version=base.version,
            data_sha256="0" * 64,
            videos_per_class={a: 5 for a in NEW_ACTIONS},
            classifier=fit.classifier,
            profile=base.default_profile,
            cv_folds=fit.folds,
            cv_accuracy=fit.cv_accuracy,
            cv_p_value=fit.p_value,
            reject_threshold=reject.threshold,
            prototypes=tuple(map(tuple, reject.prototypes.tolist())),
            extends_base=True,
        ),
        step=lambda title: nullcontext(),
    )
    answer = client.post("/search", params={"model": "new-motions", "top_k": 10})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["query"] == "classes" and body["index"] == "demo-actions@1"
    assert body["labels"] == list(NEW_ACTIONS) and body["windows_scored"] == 36
    found = {
        (m["video_id"], m["label"], shown(m["video_id"], m["start_s"], m["end_s"]))
        for m in body["moments"]
    }
    stretches = {
        ("cam/0.mp4", UP_RIGHT),
        ("cam/3.mp4", UP_RIGHT),
        ("cam/1.mp4", DOWN_LEFT),
        ("cam/2.mp4", DOWN_LEFT),
    }
    # Five 2 s clips a class teach it: at least three of the four stretches are found, and
    # at most one moment of another motion (the model's own "moving left" is the one next to
    # "moving down-left"; --extend and the open-set gate drop the others).
    assert len({(v, label) for v, label, _ in found} & stretches) >= 3
    assert sum(label != motion for _, label, motion in found) <= 1, found
    one = client.post(
        "/search", params={"model": "new-motions", "label": DOWN_LEFT, "threshold": 0.9}
    ).json()
    assert {m["label"] for m in one["moments"]} == {DOWN_LEFT} and one["threshold"] == 0.9
    missing = client.post("/search", params={"model": "new-motions", "label": "jumping"})
    assert missing.status_code == 400 and "no class 'jumping'" in missing.json()["message"]
    # An index holding only another base model's embeddings: the probe's search is refused.
    settings = client.app.state.settings
    other = WindowIndex(settings.search.dir)
    other.add_video(
        Space("another-model", 3),
        "elsewhere",
        Windows.of_video("elsewhere", [0.0], [1.0], np.ones((1, 128))),
        profile="fast",
    )
    drop = client.delete("/index/models/demo-actions/versions/1")
    assert drop.json()["removed"] == [{"model": "demo-actions", "version": 1, "windows": 36}]
    refused = client.post("/search", params={"model": "new-motions"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "index_model_mismatch"
    assert "another-model@3" in refused.json()["message"]
