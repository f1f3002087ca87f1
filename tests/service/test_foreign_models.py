"""Models actserve did not export, served like its own: an imported NTCHW ONNX and a
TorchScript dict module answer exactly what the same network exported by actserve answers, on
every endpoint; `transformers` families answer what the `transformers` model answers on the
same decoded frames."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
import transformers as tf
from fastapi.testclient import TestClient

from backbones import create_model
from exporters import export_to_store
from exporters.import_artifact import import_artifact
from model_store import ModelStore, Profile
from model_store.spec import Layout
from service.app import create_app
from service.video import DecodeOptions, VideoLimits
from service.video.job import sample_frames
from tests.exporters.foreign import AsDict, TimeFirst, to_onnx, to_torchscript
from tests.exporters.hf_models import FAMILIES
from tests.service.conftest import LABELS, RECIPE, post_video, settings_for
from tests.service.test_embeddings import post_embed, post_pair

IMPORTED = ("mine-onnx", "mine-ts")


@pytest.fixture(scope="module")
def foreign_store(tmp_path_factory) -> Path:
    """`canonical`: r3d_10 as actserve exports it; `mine-onnx` and `mine-ts`: the same
    network as its user exported it (NTCHW, other names; a dict of outputs) and imported."""
    root = tmp_path_factory.mktemp("foreign")
    files = root / "files"
    files.mkdir()
    store = ModelStore(root / "store")
    torch.manual_seed(0)
    model = create_model("r3d_10", num_classes=len(LABELS), recipe=RECIPE).eval()
    export_to_store(model, model.spec.relabel(LABELS), store, trained=False, name="canonical")
    ntchw = RECIPE.model_copy(update={"layout": Layout.NTCHW})
    shape = (RECIPE.clip_len, 3, RECIPE.crop_size, RECIPE.crop_size)
    names = {"logits": "scores", "embedding": "features"}
    onnx_file = to_onnx(TimeFirst(model), files / "r3d.onnx", shape)
    ts_file = to_torchscript(AsDict(model), files / "r3d.pt", shape)
    for name, path in (("mine-onnx", onnx_file), ("mine-ts", ts_file)):
        import_artifact(path, store, name=name, recipe=ntchw, labels=LABELS, tensors=names)
    return root / "store"


@pytest.fixture(scope="module")
def foreign(foreign_store):
    with TestClient(create_app(settings_for(foreign_store, preload=["*"]))) as client:
        yield client


def scores(body: dict) -> np.ndarray:
    """The whole probability vector of a /classify answer (top_k = every class)."""
    vector = np.zeros(len(body["top_k"]))
    for entry in body["top_k"]:
        vector[entry["index"]] = entry["score"]
    return vector


@pytest.mark.parametrize("name", IMPORTED)
def test_an_imported_version_answers_like_actserves_own_export(foreign, videos, name) -> None:
    video = videos["textured.mp4"]
    for params in ({}, {"profile": "fast"}, {"per_clip": "true", "segments": "true"}):
        ours = post_video(foreign, video, model=name, top_k=5, embedding="true", **params)
        reference = post_video(
            foreign, video, model="canonical", top_k=5, embedding="true", **params
        )
        assert ours.status_code == reference.status_code == 200, ours.text
        a, b = ours.json(), reference.json()
        np.testing.assert_allclose(scores(a), scores(b), atol=1e-5)
        np.testing.assert_allclose(
            a["embedding"]["values"], b["embedding"]["values"], rtol=1e-4, atol=1e-5
        )
        assert a["video"]["views"] == b["video"]["views"]
        if params.get("per_clip"):
            assert len(a["clips"]) == len(b["clips"]) > 1
            for x, y in zip(a["clips"], b["clips"], strict=True):
                assert [e["label"] for e in x["top_k"]] == [e["label"] for e in y["top_k"]]
            assert a["segments"] == b["segments"] or _same_segments(a, b)
    embed, embed_reference = (
        post_embed(foreign, video, model=m, per_window="true") for m in (name, "canonical")
    )
    assert embed.status_code == 200, embed.text
    np.testing.assert_allclose(
        embed.json()["embedding"]["values"],
        embed_reference.json()["embedding"]["values"],
        rtol=1e-4,
        atol=1e-5,
    )
    pair = post_pair(foreign, video, videos["h264.mp4"], model=name)
    pair_reference = post_pair(foreign, video, videos["h264.mp4"], model="canonical")
    assert pair.json()["similarity"] == pytest.approx(pair_reference.json()["similarity"], abs=1e-5)


def _same_segments(a: dict, b: dict) -> bool:
    strip = lambda body: [(s["label"], s["start_s"], s["end_s"]) for s in body["segments"]]  # noqa: E731
    return strip(a) == strip(b)


@pytest.mark.parametrize("name", IMPORTED)
def test_oip_takes_the_services_clips_whatever_the_files_layout(foreign, name) -> None:
    clips = np.random.default_rng(0).standard_normal((2, *RECIPE.clip_shape), dtype=np.float32)

    def infer(model: str) -> dict[str, np.ndarray]:
        tensor = {"name": "clips", "shape": list(clips.shape), "datatype": "FP32"}
        body = {"inputs": [{**tensor, "data": clips.ravel().tolist()}]}
        response = foreign.post(f"/v2/models/{model}/infer", json=body)
        assert response.status_code == 200, response.text
        return {o["name"]: np.asarray(o["data"]) for o in response.json()["outputs"]}

    ours, reference = infer(name), infer("canonical")
    assert set(ours) == {"logits", "embedding"}
    for output in ours:
        np.testing.assert_allclose(ours[output], reference[output], rtol=1e-4, atol=1e-5)


def test_models_says_whether_the_parity_was_checked(foreign) -> None:
    body = foreign.get("/models").json()
    parity = {m["name"]: m["versions"][0]["parity"] for m in body["models"]}
    assert parity == {
        "canonical": "checked",
        "mine-onnx": "declared, not checked",
        "mine-ts": "declared, not checked",
    }
    mine = next(m for m in body["models"] if m["name"] == "mine-onnx")["versions"][0]
    assert mine["artifacts"][0]["parity"]["status"] == "declared"
    assert mine["recipe"]["layout"] == "NTCHW"


# transformers families -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_client(hf_store):
    with TestClient(create_app(settings_for(hf_store / "store", preload=["*"]))) as client:
        yield client


def transformers_probabilities(source: Path, video: Path, recipe) -> np.ndarray:
    """What `transformers` answers on the frames actserve samples for the fast profile: the
    frames decoded with PyAV (as the video-classification pipeline reads them), through the
    model's own image processor and model."""
    plan = sample_frames(video, recipe, DecodeOptions(profile=Profile.FAST), VideoLimits()).plan
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    # A slot's time is the middle of its frame's display interval: floor, not round.
    picked = [frames[int(t * fps + 1e-6)] for t in plan.times_s[0]]
    processor = tf.AutoImageProcessor.from_pretrained(source)
    model = tf.AutoModelForVideoClassification.from_pretrained(source).eval()
    inputs = processor(picked, return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits.softmax(-1)[0].double().numpy()


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_classify_answers_what_transformers_answers(hf_client, hf_store, videos, family) -> None:
    name = f"hf-{family.replace('_', '-')}"
    video = videos["textured.mp4"]
    response = post_video(hf_client, video, model=name, top_k=5, profile="fast")
    assert response.status_code == 200, response.text
    served = scores(response.json())
    recipe = ModelStore(hf_store / "store").resolve(name).spec.recipe
    reference = transformers_probabilities(hf_store / family, video, recipe)
    assert np.abs(served - reference).max() <= 2e-3, (served, reference)
    assert served.argmax() == reference.argmax()
    assert reference.max() > 0.5  # the test's classes are far apart: top-1 is no coin toss
    accurate = post_video(hf_client, video, model=name, top_k=1, embedding="true")
    assert accurate.status_code == 200, accurate.text
    assert accurate.json()["video"]["views"] == recipe.num_views
    assert accurate.json()["embedding"]["dim"] == 32
