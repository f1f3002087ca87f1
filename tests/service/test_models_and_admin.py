"""GET /models, health, metrics, the admin endpoints, and a promote under traffic."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.service.conftest import LiveServer, metric, post_video, settings_for

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_models_list_every_version_with_recipe_parity_and_state(client) -> None:
    body = client.get("/models").json()
    assert body["default_model"] == "tiny"
    (model,) = body["models"]
    assert model["name"] == "tiny" and model["default"] and model["aliases"] == {"stable": 1}
    assert model["routed_version"] == 1
    first, second = model["versions"]
    assert (first["version"], first["state"], first["aliases"]) == (1, "loaded", ["stable"])
    assert (second["version"], second["state"], second["runtime"]) == (2, "available", None)
    assert first["runtime"].startswith(("openvino", "onnxruntime")) and first["load_seconds"] >= 0
    assert first["precision"] == "fp32" and first["precision_agreement"] is None
    assert first["recipe"]["clip_len"] == 4 and first["labels_count"] == 5
    assert first["embedding_dim"] == 512 and first["trained"] is False
    assert {a["format"] for a in first["artifacts"]} == {"onnx", "torchscript"}
    assert all(a["parity"]["passed"] for a in first["artifacts"])
    assert client.get("/models/tiny").json() == model
    missing = client.get("/models/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "model_not_found"


def test_health_readiness_and_metrics(client, videos) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {
        "ready": True,
        "default_model": "tiny",
        "loaded": ["tiny@1"],
        "broken": {},
    }
    before = metric(
        client.get("/metrics").text, "actserve_inference_items_total", model="tiny", version="1"
    )
    assert post_video(client, videos["h264.mp4"]).status_code == 200
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert metric(text, "actserve_inference_items_total", model="tiny", version="1") == before + 6
    for name in (
        "actserve_upload_duration_seconds_count",
        "actserve_decode_duration_seconds_count",
        "actserve_decode_wait_duration_seconds_count",
        "actserve_queue_duration_seconds_count",
        "actserve_inference_duration_seconds_count",
        "actserve_request_duration_seconds_count",
        "actserve_request_views_count",
        "actserve_upload_bytes_total",
    ):
        assert name in text, name
    assert 'actserve_model_loaded{backbone="r3d_10",model="tiny"' in text
    assert metric(text, "actserve_model_load_seconds", model="tiny", version="1") > 0


def test_openapi_documents_the_api(client) -> None:
    schema = client.get("/openapi.json").json()
    classify = schema["paths"]["/classify"]["post"]
    assert {"413", "415", "422", "429", "503", "504"} <= set(classify["responses"])
    assert "multipart/form-data" in classify["requestBody"]["content"]
    params = {p["name"] for p in classify["parameters"]}
    assert params == {
        "model",
        "version",
        "alias",
        "top_k",
        "embedding",
        "profile",
        "per_clip",
        "segments",
        "segment_score",
        "segment_smooth",
        "segment_gap_s",
        "segment_min_s",
        "shots",
    }
    response = schema["components"]["schemas"]["ClassifyResponse"]
    assert response["examples"] and "timings" in response["properties"]
    assert not any(path.startswith("/admin") for path in schema["paths"])  # no token: no admin


def admin_operations(store_root) -> tuple[dict, dict]:
    """The admin paths of the OpenAPI document (with a token set), and its components."""
    with TestClient(create_app(settings_for(store_root, admin_token=TOKEN))) as client:
        schema = client.get("/openapi.json").json()
    paths = {p: ops for p, ops in schema["paths"].items() if p.startswith("/admin")}
    return paths, schema["components"]


def test_openapi_documents_the_admin_api(store_root) -> None:
    """Each admin call says what it does, how it fails, and that it takes the bearer token
    (the /docs Authorize button); the bodies and path parameters are described."""
    paths, components = admin_operations(store_root)
    assert len(paths) == 6
    for path, operations in paths.items():
        (operation,) = operations.values()
        assert operation["summary"] and len(operation["description"]) > 80, path
        assert {"200", "401", "404"} <= set(operation["responses"]), path
        assert operation["security"] == [{"admin token": []}], path
        for parameter in operation.get("parameters", []):
            assert parameter.get("description"), (path, parameter["name"])
    assert "409" in paths["/admin/models/{name}/versions/{version}/unload"]["post"]["responses"]
    assert components["securitySchemes"]["admin token"]["scheme"] == "bearer"
    for schema in ("PromoteRequest", "AdminResult"):
        fields = components["schemas"][schema]["properties"].values()
        assert all(f.get("description") and f.get("examples") for f in fields), schema


def test_admin_needs_its_token(store_root) -> None:
    with TestClient(create_app(settings_for(store_root, admin_token=TOKEN))) as client:
        url = "/admin/reload"
        assert client.post(url).status_code == 401
        assert client.post(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.post(url, headers={"Authorization": TOKEN}).status_code == 401
        assert client.post(url, headers=AUTH).status_code == 200
    with TestClient(create_app(settings_for(store_root))) as client:
        assert client.post(url, headers=AUTH).status_code == 404  # disabled without a token
    # A token need not be ASCII (sent as UTF-8); raw non-ASCII bytes in a wrong one get 401
    # too (tests/service/test_fuzz.py sends those over a real socket).
    with TestClient(create_app(settings_for(store_root, admin_token="clé-ünïcode"))) as client:
        for sent, status in (("Bearer clé-ünïcode", 200), ("Bearer clé", 401)):
            assert client.post(url, headers={"Authorization": sent.encode()}).status_code == status


def test_admin_load_unload_promote_rollback(writable_store, videos) -> None:
    with TestClient(create_app(settings_for(writable_store, admin_token=TOKEN))) as client:
        not_loaded = post_video(client, videos["h264.mp4"], version=2)
        assert not_loaded.status_code == 404
        assert "POST /admin/models/tiny/versions/2/load" in not_loaded.json()["message"]
        loaded = client.post("/admin/models/tiny/versions/2/load", headers=AUTH)
        assert loaded.status_code == 200 and loaded.json()["loaded"] == ["tiny@1", "tiny@2"]
        assert post_video(client, videos["h264.mp4"], version=2).json()["version"] == 2
        routed = client.post("/admin/models/tiny/versions/1/unload", headers=AUTH)
        assert routed.status_code == 409 and routed.json()["error"] == "conflict"
        reason = routed.json()["message"]
        assert "the default version and alias 'stable'" in reason, reason
        assert client.post("/admin/models/tiny/versions/2/unload", headers=AUTH).status_code == 200
        promoted = client.post("/admin/models/tiny/promote", headers=AUTH, json={"version": 2})
        assert promoted.status_code == 200 and "version 2" in promoted.json()["message"]
        assert post_video(client, videos["h264.mp4"]).json()["version"] == 2
        back = client.post("/admin/models/tiny/rollback", headers=AUTH)
        assert (
            back.status_code == 200
            and post_video(client, videos["h264.mp4"]).json()["version"] == 1
        )
        nothing = client.post("/admin/models/tiny/rollback", headers=AUTH)
        assert nothing.status_code == 404 and "no earlier version" in nothing.json()["message"]
        unknown = client.post("/admin/models/tiny/promote", headers=AUTH, json={"version": 9})
        assert unknown.status_code == 404
        traversal = client.post("/admin/models/..%2Fx/promote", headers=AUTH, json={"version": 1})
        assert traversal.status_code in (400, 404)


def test_reload_follows_aliases_moved_in_the_store(writable_store, videos) -> None:
    from model_store import ModelStore

    with TestClient(create_app(settings_for(writable_store, admin_token=TOKEN))) as client:
        ModelStore(writable_store).promote("tiny", 2)  # e.g. `actserve models promote`
        assert post_video(client, videos["h264.mp4"]).json()["version"] == 1
        assert client.post("/admin/reload", headers=AUTH).json()["loaded"] == ["tiny@2"]
        assert post_video(client, videos["h264.mp4"]).json()["version"] == 2


@pytest.mark.slow
def test_promote_under_traffic_drops_nothing(writable_store, videos) -> None:
    """Requests keep flowing while v2 is loaded, warmed and promoted; every one succeeds,
    traffic moves from v1 to v2, and v1 drains and is freed."""
    settings = settings_for(writable_store, admin_token=TOKEN, max_delay_ms=5)
    path = videos["h264.mp4"]
    with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        results: list[tuple[int, int | None, float]] = []  # status, version, sent at
        stop = threading.Event()

        def traffic() -> None:
            with httpx.Client(base_url=server.url, timeout=60) as own:
                while not stop.is_set():
                    sent = time.monotonic()
                    response = post_video(own, path)
                    version = (
                        response.json().get("version") if response.status_code == 200 else None
                    )
                    results.append((response.status_code, version, sent))

        workers = [threading.Thread(target=traffic) for _ in range(4)]
        for worker in workers:
            worker.start()
        time.sleep(1.0)
        promoted = client.post("/admin/models/tiny/promote", headers=AUTH, json={"version": 2})
        assert promoted.status_code == 200, promoted.text
        switched = time.monotonic()
        time.sleep(1.0)
        stop.set()
        for worker in workers:
            worker.join()
        assert results and all(status == 200 for status, _, _ in results), results
        versions = [version for _, version, _ in results]
        assert 1 in versions and 2 in versions
        # every request sent after the promote returned went to v2 (earlier ones may finish later)
        assert {version for _, version, sent in results if sent > switched} == {2}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = {
                v["version"]: v["state"] for v in client.get("/models/tiny").json()["versions"]
            }
            if states[1] == "available":
                break
            time.sleep(0.1)
        assert states == {1: "available", 2: "loaded"}
        loaded = [
            line
            for line in client.get("/metrics").text.splitlines()
            if line.startswith("actserve_model_loaded{")
        ]
        assert len(loaded) == 1 and 'version="2"' in loaded[0]
