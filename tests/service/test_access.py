"""Optional API keys on the inference routes and CORS for browser clients, both off by
default."""

from __future__ import annotations

import hashlib

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.service.conftest import metric, post_video, settings_for

KEY_A, KEY_B = "a-very-secret-key", "another-secret"


def line(name: str, key: str) -> str:
    return f"{name}:{hashlib.sha256(key.encode()).hexdigest()}"


def test_keys_guard_the_inference_routes_and_count_per_key(store_root, videos, tmp_path):
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(f"# the mobile team\n{line('team-b', KEY_B)}\n")
    settings = settings_for(store_root, api_keys=line("team-a", KEY_A), api_keys_file=keys_file)
    with TestClient(create_app(settings)) as client:
        missing = post_video(client, videos["h264.mp4"])
        assert missing.status_code == 401 and missing.json()["error"] == "unauthorized"
        assert "X-API-Key" in missing.json()["message"]
        client.headers["X-API-Key"] = "wrong"
        wrong = post_video(client, videos["h264.mp4"])
        assert wrong.status_code == 403 and wrong.json()["error"] == "forbidden"
        assert "wrong" not in wrong.text
        client.headers["X-API-Key"] = KEY_A
        assert post_video(client, videos["h264.mp4"]).status_code == 200
        del client.headers["X-API-Key"]
        client.headers["Authorization"] = f"Bearer {KEY_B}"
        assert post_video(client, videos["h264.mp4"]).status_code == 200
        infer = client.post("/v2/models/tiny/infer", headers={"Authorization": ""}, json={})
        assert infer.status_code == 401
        # Health, metrics and metadata stay open to probes and scrapers.
        del client.headers["Authorization"]
        for path in ("/healthz", "/readyz", "/models", "/v2/models/tiny"):
            assert client.get(path).status_code == 200, path
        text = client.get("/metrics").text
    assert metric(text, "actserve_api_key_requests_total", key="team-a") == 1
    assert metric(text, "actserve_api_key_requests_total", key="team-b") == 1
    assert KEY_A not in text and KEY_B not in text


def test_keys_are_off_by_default_and_malformed_entries_refused(store_root, tmp_path) -> None:
    with TestClient(create_app(settings_for(store_root))) as client:
        assert client.get("/openapi.json").status_code == 200
        assert "access-control-allow-origin" not in client.get("/healthz").headers
    with pytest.raises(ValueError, match=r"entry 1 \('plain'\) is not NAME:SHA256HEX"):
        create_app(settings_for(store_root, api_keys="plain:not-a-digest"))
    with pytest.raises(ValueError, match="No such file"):
        create_app(settings_for(store_root, api_keys_file=tmp_path / "missing"))


def test_cors_lets_the_configured_origins_call(store_root) -> None:
    settings = settings_for(store_root, cors_origins="https://app.example.com")
    with TestClient(create_app(settings)) as client:
        preflight = client.options(
            "/classify",
            headers={
                "Origin": "https://app.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
        answer = client.get("/healthz", headers={"Origin": "https://app.example.com"})
        assert answer.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "X-Request-ID" in answer.headers["access-control-expose-headers"]
        other = client.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
