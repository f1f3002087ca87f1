"""The service's whole probability vector equals the family's reference pipeline run on the same
ONNX artifact: X3D, VoV3D, 3D-ResNets (2020 and 2018 protocols), P3D and TPN (SlowOnly and
TSM protocols), `accurate` and `per_clip`, within 2e-3 per class with the same top-1.

Small random-weight models of each family are exported to a session store with their
registered recipe shrunk to tiny sizes (tests/service/video/families.py); the reference side
decodes every frame with PyAV and samples, resizes, crops and normalises as the reference code
does (tests/service/video/references.py). The bundled demo model's schema-1 manifest is checked
the same way against the protocol it was published with.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from fastapi.testclient import TestClient

from actserve.demo.synthetic import render_video, write_video
from backbones import create_model
from exporters import export_to_store
from model_store import ManifestDraft, ModelStore, Recipe
from service.app import create_app
from service.settings import BUNDLED_STORE
from tests.service.conftest import post_video, settings_for
from tests.service.video import media
from tests.service.video import references as ref
from tests.service.video.families import FAMILIES

pytestmark = pytest.mark.slow  # five small exports (~1-2 min on a 2-core CPU)

NUM_CLASSES = 7
#: Families whose artifact another family reuses under its own recipe (same input shape): the
#: protocol is the manifest's, so one export serves both.
SHARED = {"hara_2018": "hara", "tpn_tsm": "tpn"}


@pytest.fixture(scope="session")
def protocol_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("protocol_store")
    store = ModelStore(root)
    for name, family in FAMILIES.items():
        if name in SHARED:
            continue
        torch.manual_seed(0)
        recipe = family.recipe()
        model = create_model(family.model, num_classes=NUM_CLASSES, recipe=recipe, **family.variant)
        export_to_store(model, model.spec, store, trained=False, name=name)
    for name, source in SHARED.items():
        manifest = store.resolve(source)
        spec = manifest.spec.model_copy(update={"recipe": FAMILIES[name].recipe()})
        fields = manifest.model_dump(include=set(ManifestDraft.model_fields) - {"spec"})
        draft = ManifestDraft(**fields, spec=spec)
        onnx = store.version_dir(source, manifest.version) / "model.onnx"
        store.publish(name, draft, {"model.onnx": onnx})
    return root


@pytest.fixture(scope="module")
def client(protocol_store: Path) -> Iterator[TestClient]:
    settings = settings_for(protocol_store, default_model="x3d", preload=["*"])
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def reference_scores(
    store: ModelStore, name: str, pipeline: str, path: Path, recipe: Recipe, windows: bool
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Softmax of the artifact on the reference's views: averaged over all views, and per clip
    (its crops averaged)."""
    views, clips = ref.reference_views(pipeline, path, recipe, windows=windows)
    onnx = store.version_dir(name, store.resolve(name).version) / "model.onnx"
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    logits = np.concatenate([session.run(["logits"], {"clips": v[None]})[0] for v in views])
    probabilities = ref.softmax(logits)
    per_clip = [probabilities[clips == c].mean(0) for c in np.unique(clips)]
    return probabilities.mean(0), per_clip


def served(entries: list[dict]) -> np.ndarray:
    vector = np.zeros(NUM_CLASSES)
    for entry in entries:
        vector[entry["index"]] = entry["score"]
    return vector


def assert_same_scores(ours: np.ndarray, reference: np.ndarray) -> None:
    assert np.abs(ours - reference).max() <= 2e-3, (ours, reference)
    assert ours.argmax() == reference.argmax()


@pytest.mark.parametrize("family", FAMILIES)
def test_accurate_and_per_clip_scores_equal_the_reference(
    client, videos, protocol_store: Path, family: str
) -> None:
    path = videos["protocol.avi"]
    store = ModelStore(protocol_store)
    recipe = store.resolve(family).spec.recipe
    assert recipe == FAMILIES[family].recipe()
    pipeline = FAMILIES[family].pipeline

    body = post_video(client, path, model=family, top_k=NUM_CLASSES).json()
    expected, _ = reference_scores(store, family, pipeline, path, recipe, windows=False)
    assert body["video"]["views"] == len(ref.reference_views(pipeline, path, recipe)[0])
    assert_same_scores(served(body["top_k"]), expected)

    body = post_video(client, path, model=family, top_k=NUM_CLASSES, per_clip="true").json()
    _, expected_clips = reference_scores(store, family, pipeline, path, recipe, windows=True)
    assert len(body["clips"]) == len(expected_clips)
    for clip, expected in zip(body["clips"], expected_clips, strict=True):
        assert_same_scores(served(clip["top_k"]), expected)
    # the tail is scored too, except where the reference leaves it out: the CVPR2018 branch
    # never starts a window at the last frame (49 = 3 × 16 + 1 frames)
    last = 48 if family == "hara_2018" else 49
    assert body["clips"][-1]["end_s"] == pytest.approx(last / 30)


def test_a_sliding_protocol_streams_a_long_video_in_chunks(
    protocol_store: Path, tmp_path: Path
) -> None:
    """3D-ResNets' `accurate` scores every window of the video: a video of more windows than
    one chunk holds, with a view-bytes limit below the whole plan's, is streamed through in
    chunks (a single job would be refused with 422) and still equals the reference."""
    path = tmp_path / "long.avi"
    media.write_video(  # 4-frame windows: 103 windows and a 1-frame tail
        path,
        codec="mjpeg",
        pix_fmt="yuvj420p",
        size=(96, 70),
        num_frames=4 * 102 + 1,
        painter=media.paint_texture,
    )
    store = ModelStore(protocol_store)
    recipe = store.resolve("hara").spec.recipe
    window_bytes = 4 * 3 * recipe.clip_len * recipe.crop_size**2
    settings = settings_for(protocol_store, default_model="hara", max_view_bytes=40 * window_bytes)
    with TestClient(create_app(settings)) as client:
        body = post_video(client, path, model="hara", top_k=NUM_CLASSES).json()
    expected, _ = reference_scores(store, "hara", "hara", path, recipe, windows=False)
    assert body["video"]["views"] == 103
    assert_same_scores(served(body["top_k"]), expected)


def test_the_bundled_demo_serves_its_schema_1_protocol(videos, tmp_path: Path) -> None:
    """The demo's manifest predates schema 2: it keeps actserve's protocol of then, mmaction2's
    uniform clips, FFmpeg's area filter, mmcv rounding, floor crops, the tail window dropped."""
    store = ModelStore(BUNDLED_STORE)
    manifest = store.resolve(store.default_model())
    assert manifest.schema_version == 1
    recipe = manifest.spec.recipe
    path = tmp_path / "demo.avi"
    write_video(render_video("rotating clockwise", seed=3, height=240, width=320), str(path))
    frames = np.stack(ref.decode_all(path, lambda f: ref.torchvision_reader_frame(f, 48)))
    count = len(frames)
    onnx = store.version_dir(manifest.name, manifest.version) / "model.onnx"
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])

    def scores(rows) -> np.ndarray:
        views = [ref.mmaction_centre_crop(frames[row], recipe.crop_size) for row in rows]
        x = ref.normalise(views, recipe.mean, recipe.std, recipe.pixel_scale)
        return ref.softmax(session.run(["logits"], {"clips": x})[0])

    clips = ref.mmaction_sample_frames(count, recipe.clip_len, recipe.frame_interval, 2)
    length = recipe.clip_len * recipe.frame_interval
    starts = range(0, count - length + 1, length)  # whole windows only
    windows = [start + np.arange(recipe.clip_len) * recipe.frame_interval for start in starts]
    with TestClient(create_app(settings_for(BUNDLED_STORE))) as client:
        body = post_video(client, path, top_k=10).json()
        per_clip = post_video(client, path, top_k=10, per_clip="true").json()
    labels = {label: i for i, label in enumerate(manifest.spec.labels)}

    def vector(entries) -> np.ndarray:
        out = np.zeros(len(labels))
        for entry in entries:
            out[labels[entry["label"]]] = entry["score"]
        return out

    assert_same_scores(vector(body["top_k"]), scores(clips).mean(0))
    expected = scores(windows)
    assert len(per_clip["clips"]) == len(expected)
    for clip, row in zip(per_clip["clips"], expected, strict=True):
        assert_same_scores(vector(clip["top_k"]), row)
