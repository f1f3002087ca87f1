"""POST /embed and POST /similarity through ASGI: numbers checked against an independent
decode + ONNX Runtime run, the two-video upload, and the shared error contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from model_store import ModelStore
from service.app import create_app
from service.responses import DEFAULT_SIMILARITY_THRESHOLD
from service.video import DecodeOptions, VideoLimits, decode_video
from tests.service.conftest import RECIPE, metric, settings_for


def reference_embeddings(
    store_root: Path, path: Path, *, profile: str = "accurate", windows: bool = False
) -> np.ndarray:
    """Per-view embeddings of tiny v1's ONNX on an independent decode of `path`."""
    options = DecodeOptions(profile=profile, windows=windows)
    decoded = decode_video(path, RECIPE, options, VideoLimits())
    onnx_path = ModelStore(store_root).version_dir("tiny", 1) / "model.onnx"
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(["embedding"], {"clips": decoded.views})[0]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def post_pair(client: TestClient, a: Path, b: Path, **params: object):
    with a.open("rb") as fa, b.open("rb") as fb:
        return client.post(
            "/similarity",
            params=params,
            files={"a": (a.name, fa, "video/mp4"), "b": (b.name, fb, "video/mp4")},
        )


def post_embed(client: TestClient, path: Path, **params: object):
    with path.open("rb") as f:
        return client.post("/embed", params=params, files={"video": (path.name, f, "video/mp4")})


def test_embed_returns_the_mean_float32_embedding(client, videos, store_root) -> None:
    response = post_embed(client, videos["h264.mp4"])
    assert response.status_code == 200, response.text
    body = response.json()
    expected = reference_embeddings(store_root, videos["h264.mp4"])
    assert body["model"] == "tiny" and body["embedding"]["dim"] == 512
    assert body["video"]["views"] == RECIPE.num_views and body["windows"] is None
    served = np.asarray(body["embedding"]["values"])
    assert served.shape == (512,)
    # float32 values survive JSON exactly: the list is the float32 vector
    np.testing.assert_array_equal(served.astype(np.float32).astype(np.float64), served)
    np.testing.assert_allclose(served, expected.mean(0), rtol=1e-4, atol=1e-6)


def test_embed_per_window_gives_each_window_in_order(client, videos, store_root) -> None:
    body = post_embed(client, videos["h264.mp4"], per_window="true", profile="fast").json()
    expected = reference_embeddings(store_root, videos["h264.mp4"], profile="fast", windows=True)
    windows = body["windows"]
    span = RECIPE.clip_len * RECIPE.frame_interval / 30
    assert len(windows) == 96 // (RECIPE.clip_len * RECIPE.frame_interval) == len(expected)
    for number, window in enumerate(windows):
        assert window["window"] == number
        assert window["start_s"] == pytest.approx(number * span, abs=1e-6)
        np.testing.assert_allclose(window["values"], expected[number], rtol=1e-4, atol=1e-6)
    # The windows are extra: the video's embedding stays the profile's own (issue 26).
    plain = post_embed(client, videos["h264.mp4"], profile="fast").json()
    assert body["embedding"]["values"] == pytest.approx(
        plain["embedding"]["values"], rel=1e-5, abs=1e-6
    )


def test_classify_and_embed_answer_one_embedding_shape(client, videos) -> None:
    """A video's embedding is one object, {dim, values}, from /classify and /embed alike
    (issue 26: /embed answered a bare list beside a top-level `dim`)."""
    path = videos["h264.mp4"]
    embedded = post_embed(client, path, profile="fast").json()
    with path.open("rb") as f:
        classified = client.post(
            "/classify",
            params={"embedding": "true", "profile": "fast"},
            files={"video": (path.name, f, "video/mp4")},
        ).json()
    assert set(embedded["embedding"]) == set(classified["embedding"]) == {"dim", "values"}
    assert "dim" not in embedded
    assert embedded["embedding"]["dim"] == classified["embedding"]["dim"] == 512
    assert embedded["embedding"]["values"] == pytest.approx(
        classified["embedding"]["values"], rel=1e-5, abs=1e-6
    )
    # The API reference says so too: both fields are the one Embedding schema.
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for response in ("ClassifyResponse", "EmbedResponse"):
        field = schemas[response]["properties"]["embedding"]
        refs = [field.get("$ref")] + [option.get("$ref") for option in field.get("anyOf", [])]
        assert "#/components/schemas/Embedding" in refs, (response, field)


def test_similarity_is_the_cosine_of_the_mean_embeddings(client, videos, store_root) -> None:
    a, b = videos["h264.mp4"], videos["gradient.mp4"]
    response = post_pair(client, a, b)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = cosine(
        reference_embeddings(store_root, a).mean(0), reference_embeddings(store_root, b).mean(0)
    )
    assert body["similarity"] == pytest.approx(expected, abs=1e-5)
    assert body["threshold"] == DEFAULT_SIMILARITY_THRESHOLD
    assert body["threshold_source"] == "default"
    assert body["same_action"] == (expected >= DEFAULT_SIMILARITY_THRESHOLD)
    assert body["a"]["codec"] == "h264" and body["b"]["views"] == RECIPE.num_views
    timings = body["timings"]
    assert timings["total_ms"] >= timings["decode_ms"] > 0


def test_a_video_is_the_same_action_as_itself(client, videos) -> None:
    body = post_pair(client, videos["vp9.webm"], videos["vp9.webm"], profile="fast").json()
    assert body["similarity"] == pytest.approx(1.0, abs=1e-6) and body["same_action"]
    strict = post_pair(client, videos["h264.mp4"], videos["gradient.mp4"], threshold=1.0).json()
    assert strict["threshold_source"] == "request" and not strict["same_action"]


@pytest.mark.parametrize(
    ("fields", "status", "code", "message"),
    [
        ({"a": "h264.mp4"}, 400, "bad_request", "no 'b' file field"),
        ({"a": "h264.mp4", "b": "random.bin"}, 415, "not_a_video", "video 'b'"),
        ({"a": "no_moov.mp4", "b": "h264.mp4"}, 422, "corrupt_video", "video 'a'"),
        ({"a": "h264.mp4", "b": "bomb.avi"}, 422, "limit_exceeded", "video 'b': pixels"),
    ],
)
def test_similarity_errors_name_the_video(client, videos, fields, status, code, message) -> None:
    files = {
        field: (name, videos[name].read_bytes(), "video/mp4") for field, name in fields.items()
    }
    response = client.post("/similarity", files=files)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code and message in body["message"] and body["request_id"]


def test_similarity_takes_multipart_only(client, videos) -> None:
    raw = client.post(
        "/similarity",
        content=videos["h264.mp4"].read_bytes(),
        headers={"Content-Type": "video/mp4"},
    )
    assert raw.status_code == 415 and "fields 'a' and 'b'" in raw.json()["message"]
    empty = client.post("/similarity", files={"a": ("a.mp4", b"", "video/mp4"), "b": ("b", b"x")})
    assert empty.status_code == 400 and "field 'a' is empty" in empty.json()["message"]


@pytest.mark.parametrize(
    ("route", "params", "status", "message"),
    [
        ("/embed", {"model": "nope"}, 404, "does not exist"),
        ("/embed", {"profile": "slow"}, 400, "profile"),
        ("/similarity", {"threshold": 2}, 400, "threshold"),
        ("/similarity", {"version": 1, "alias": "stable"}, 400, "not both"),
    ],
)
def test_bad_parameters(client, videos, route, params, status, message) -> None:
    data = videos["h264.mp4"].read_bytes()
    files = (
        {"video": ("v.mp4", data)} if route == "/embed" else {"a": ("a", data), "b": ("b", data)}
    )
    response = client.post(route, params=params, files=files)
    assert response.status_code == status, response.text
    assert message in response.json()["message"]


def test_each_video_of_a_pair_is_held_to_the_upload_limit(store_root, videos, tmp_path) -> None:
    small, big = videos["h264.mp4"], videos["gradient.mp4"]
    # The body fits twice the limit; the field `b` alone does not fit it.
    limit = int(big.stat().st_size * 0.6)
    assert small.stat().st_size < limit < big.stat().st_size
    settings = settings_for(
        store_root, max_upload_bytes=limit, decode_workers=1, upload_dir=tmp_path
    )
    with TestClient(create_app(settings)) as client:
        assert post_pair(client, small, small).status_code == 200
        refused = post_pair(client, small, big)
        assert refused.status_code == 413, refused.text
        assert "field 'b' exceeds max_upload_bytes" in refused.json()["message"]
        assert post_embed(client, big).status_code == 413
        assert post_pair(client, small, videos["random.bin"]).status_code == 415
    assert list(tmp_path.iterdir()) == []  # every spooled upload was removed


def test_requests_are_counted_per_endpoint(client, videos) -> None:
    before = client.get("/metrics").text
    post_embed(client, videos["h264.mp4"], profile="fast")
    post_pair(client, videos["h264.mp4"], videos["random.bin"])
    after = client.get("/metrics").text
    for endpoint, status in (("/embed", "200"), ("/similarity", "415")):
        labels = dict(endpoint=endpoint, model="tiny", version="1", status=status)
        delta = metric(after, "actserve_requests_total", **labels) - metric(
            before, "actserve_requests_total", **labels
        )
        assert delta == 1, (endpoint, status)


def test_openapi_documents_both_endpoints(client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    pair = paths["/similarity"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert pair["schema"]["required"] == ["a", "b"]
    assert "video/*" in paths["/embed"]["post"]["requestBody"]["content"]
    for path in ("/embed", "/similarity"):
        assert {"200", "400", "413", "415", "422", "504"} <= set(paths[path]["post"]["responses"])
