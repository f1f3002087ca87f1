"""`actserve probe`: the bundled demo model learns two motions it never saw from six videos
each, and the published model recognises fresh ones through HTTP; folders that cannot teach
anything are refused with a clear message and nothing is published."""

from __future__ import annotations

import dataclasses
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from actserve.cli import app
from actserve.demo.synthetic import NEW_ACTIONS, render_video, write_video
from actserve.probe import (
    ProbeError,
    calibrate_similarity,
    check_fit,
    fit_probe,
    read_labelled_folder,
)
from model_store import ModelStore
from service.settings import BUNDLED_STORE, Settings
from tests.service.conftest import LiveServer

TRAIN_SEED, FRESH_SEED = 5_000_000, 6_000_000
TRAIN_PER_CLASS, FRESH_PER_CLASS = 6, 5


def make_videos(root: Path, per_class: int, seed: int) -> dict[str, list[Path]]:
    """`per_class` videos of each new motion, in one sub-folder per motion."""
    jobs = [
        (action, seed + 100 * a + i, root / action / f"{i}.mp4")
        for a, action in enumerate(NEW_ACTIONS)
        for i in range(per_class)
    ]

    def make(job: tuple[str, int, Path]) -> None:
        action, seed, path = job
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(render_video(action, seed=seed, height=120, width=160), str(path))

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(make, jobs))
    return {action: sorted((root / action).iterdir()) for action in NEW_ACTIONS}


def writable_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    for path in target.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


@pytest.fixture(scope="module")
def train(tmp_path_factory) -> dict[str, list[Path]]:
    return make_videos(tmp_path_factory.mktemp("train"), TRAIN_PER_CLASS, TRAIN_SEED)


def probe(store: Path, data: Path, name: str):
    arguments = ["probe", "--base", "demo-actions", "--data", str(data), "--name", name]
    return CliRunner().invoke(app, [*arguments, "--store", str(store), "--workers", "2"])


def test_probe_on_new_motions_recognises_fresh_videos_through_http(
    train, tmp_path: Path, tmp_path_factory
) -> None:
    store = writable_copy(BUNDLED_STORE, tmp_path / "store")
    data = train[NEW_ACTIONS[0]][0].parent.parent
    result = probe(store, data, "new-motions")
    assert result.exit_code == 0, result.output
    assert "cross-validated accuracy" in result.output and "published new-motions" in result.output

    manifest = ModelStore(store).verify("new-motions", 1)
    assert manifest.spec.labels == tuple(sorted(NEW_ACTIONS))
    assert manifest.probe.base_model == "demo-actions" and manifest.probe.base_version == 1
    assert manifest.probe.data_sha256 == read_labelled_folder(data).data_sha256
    assert manifest.probe.cv_accuracy >= 0.9 and manifest.probe.cv_p_value < 0.05
    assert manifest.similarity is not None and manifest.similarity.balanced_accuracy >= 0.9
    assert all(a.parity.passed for a in manifest.artifacts)

    fresh = make_videos(tmp_path_factory.mktemp("fresh"), FRESH_PER_CLASS, FRESH_SEED)
    settings = Settings(store=store, preload=["new-motions"], decode_workers=2)
    with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=60) as client:

        def post(route: str, files: dict[str, Path], **params: str) -> dict:
            opened = {f: (p.name, p.read_bytes()) for f, p in files.items()}
            response = client.post(route, params=params, files=opened)
            assert response.status_code == 200, response.text
            return response.json()

        answers = [
            (action, post("/classify", {"video": path}, model="new-motions")["top_k"][0]["label"])
            for action, paths in fresh.items()
            for path in paths
        ]
        right = sum(truth == guess for truth, guess in answers)
        assert right / len(answers) >= 0.9, answers

        # The new model is the base network: its embedding is the demo model's.
        video = fresh[NEW_ACTIONS[0]][0]
        ours = post("/embed", {"video": video}, model="new-motions")["embedding"]["values"]
        base = post("/embed", {"video": video}, model="demo-actions")["embedding"]["values"]
        np.testing.assert_allclose(ours, base, rtol=1e-5, atol=1e-6)

        up, down = fresh[NEW_ACTIONS[0]], fresh[NEW_ACTIONS[1]]
        same = post("/similarity", {"a": up[0], "b": up[1]}, model="new-motions")
        other = post("/similarity", {"a": up[0], "b": down[0]}, model="new-motions")
        assert same["threshold_source"] == "calibrated"
        assert same["threshold"] == pytest.approx(manifest.similarity.threshold)
        assert same["same_action"] and not other["same_action"]
        (listed,) = client.get("/models/new-motions").json()["versions"]
        assert listed["probe"]["base_model"] == "demo-actions" and listed["similarity"]


def test_a_mislabelled_folder_is_refused_and_nothing_is_published(train, tmp_path: Path) -> None:
    """Both folders hold half of each motion: the labels say nothing about the videos."""
    data = tmp_path / "mixed"
    for action, paths in train.items():
        for i, path in enumerate(paths):
            target = data / ("x" if i % 2 else "y") / f"{action}-{i}.mp4"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    store = tmp_path / "store"
    result = probe(store, data, "mixed")
    assert result.exit_code == 1
    assert "not learnable" in result.output and "mislabelled" in result.output
    assert "Nothing was published" in result.output
    assert ModelStore(store).list_models() == []


def test_a_one_class_folder_is_refused(train, tmp_path: Path) -> None:
    data = tmp_path / "one"
    shutil.copytree(train[NEW_ACTIONS[0]][0].parent, data / "only")
    result = probe(tmp_path / "store", data, "one")
    assert result.exit_code == 1 and "at least two class sub-folders" in result.output
    assert "only one: 'only'" in result.output


def test_folders_that_cannot_train_name_the_problem(train, tmp_path: Path) -> None:
    up, down = train[NEW_ACTIONS[0]], train[NEW_ACTIONS[1]]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(up[0], tmp_path / "a" / "1.mp4")
    shutil.copy(up[1], tmp_path / "a" / "2.mp4")
    shutil.copy(down[0], tmp_path / "b" / "1.mp4")
    (tmp_path / "b" / "notes.txt").write_text("not a video")
    with pytest.raises(ProbeError, match=r"at least two usable videos; too few in 'b' \(1\)"):
        read_labelled_folder(tmp_path)
    shutil.copy(up[0], tmp_path / "b" / "copy.mp4")
    with pytest.raises(ProbeError, match="the same video is filed under two classes"):
        read_labelled_folder(tmp_path)
    with pytest.raises(ProbeError, match="is not a folder"):
        read_labelled_folder(tmp_path / "missing")


def test_the_data_hash_follows_contents_and_labels_not_file_names(train, tmp_path) -> None:
    up, down = train[NEW_ACTIONS[0]], train[NEW_ACTIONS[1]]
    for root, names in ((tmp_path / "one", ("1", "2")), (tmp_path / "two", ("x", "y"))):
        for label, paths in (("a", up), ("b", down)):
            (root / label).mkdir(parents=True)
            for name, path in zip(names, paths, strict=False):
                shutil.copy(path, root / label / f"{name}.mp4")
    one, two = read_labelled_folder(tmp_path / "one"), read_labelled_folder(tmp_path / "two")
    assert one.data_sha256 == two.data_sha256
    (tmp_path / "two" / "b").rename(tmp_path / "two" / "c")
    assert read_labelled_folder(tmp_path / "two").data_sha256 != one.data_sha256


@pytest.mark.parametrize("classes", [2, 3])
def test_the_folded_head_equals_the_fitted_classifier(classes: int) -> None:
    """softmax(x @ W.T + b) on raw embeddings is the scikit-learn pipeline's probability."""
    rng = np.random.default_rng(classes)
    labels = np.repeat(np.arange(classes), 8)
    centres = rng.normal(0, 2, (classes, 16))
    x = np.abs(centres[labels] + rng.normal(0, 1, (len(labels), 16)))
    fit = fit_probe(x, labels)
    assert (
        fit.cv_accuracy >= 0.9 and fit.p_value < 0.01 and fit.chance == pytest.approx(1 / classes)
    )
    logits = fit.logits(x)
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    reference = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
    np.testing.assert_allclose(probabilities, reference.fit(x, labels).predict_proba(x), atol=1e-5)


def test_random_labels_fail_the_significance_check() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 16))
    fit = fit_probe(x, np.tile([0, 1], 20))
    with pytest.raises(ProbeError, match="not learnable"):
        check_fit(fit, ("a", "b"), None)
    good = fit_probe(x + np.repeat([[0], [4]], 20, axis=0), np.repeat([0, 1], 20))
    check_fit(good, ("a", "b"), 0.9)
    with pytest.raises(ProbeError, match="below --min-accuracy"):
        check_fit(dataclasses.replace(good, cv_accuracy=0.8), ("a", "b"), 0.9)


def test_the_similarity_threshold_separates_same_and_different_pairs() -> None:
    rng = np.random.default_rng(0)
    directions = np.eye(3, 8)
    labels = np.repeat(np.arange(3), 4)
    x = directions[labels] + rng.normal(0, 0.05, (12, 8))
    calibration = calibrate_similarity(x, labels, source="synthetic")
    assert calibration.pairs == 66 and calibration.balanced_accuracy == 1.0
    norm = x / np.linalg.norm(x, axis=1, keepdims=True)
    cosines = norm @ norm.T
    same = labels[:, None] == labels[None, :]
    assert cosines[~same].max() < calibration.threshold < cosines[same].min()


def _three_classes(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    centres = 4 * np.random.default_rng(42).standard_normal((3, 16))
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), 8)
    return centres[y] + rng.standard_normal((len(y), 16)), y


def test_a_video_filed_under_the_wrong_class_is_named() -> None:
    from actserve.probe import LabelledVideos, mislabelled

    x, y = _three_classes()
    y_filed = y.copy()
    y_filed[3] = 2  # a class-0 video filed under class 2
    folder = LabelledVideos(
        ("a", "b", "c"), tuple(Path(f"{i}.mp4") for i in range(len(y))), y_filed, ("0",) * len(y)
    )
    fit = fit_probe(x, y_filed, folds=4)
    assert (Path("3.mp4"), "c", "a") in mislabelled(fit, folder)
    assert len(mislabelled(fit, folder)) <= 2  # its folder-mates may be confused by it


def test_the_open_set_threshold_rejects_motions_of_no_class() -> None:
    from actserve.probe import calibrate_open_set

    x, y = _three_classes()
    reject = calibrate_open_set(x, y, folds=4)
    fresh, _ = _three_classes(seed=1)  # the same classes, new samples
    strangers = 4 * np.random.default_rng(2).standard_normal((20, 16))  # none of them
    assert (reject.similarity(fresh) >= reject.threshold).mean() >= 0.9
    assert (reject.similarity(strangers) < reject.threshold).mean() >= 0.9


def test_extend_keeps_the_base_classes_and_adds_the_new_ones() -> None:
    from actserve.probe import extend_head

    x, y = _three_classes()
    fit = fit_probe(x, y, folds=4)
    rng = np.random.default_rng(3)
    base_weight, base_bias = rng.standard_normal((5, 16)), np.zeros(5)
    weight, bias = extend_head(fit, base_weight, base_bias, x)
    assert weight.shape == (8, 16) and bias.shape == (8,)
    np.testing.assert_allclose(weight[:5], base_weight, rtol=1e-6)
    logits = x @ weight.T + bias
    assert (logits.argmax(1) >= 5).mean() >= 0.9  # the labelled videos: new classes
    base_like = 10 * base_weight[:2]  # far along a base class's own direction
    assert list((base_like @ weight.T + bias).argmax(1)) == [0, 1]
