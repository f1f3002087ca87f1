"""One damaged version never stops the service: versions load independently, a broken one is
listed and refused; aliases can be deleted (store, admin API)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from model_store import AliasNotFoundError, ModelStore
from service.app import create_app
from tests.service.conftest import metric, post_video, settings_for

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def damage(store: Path, name: str, version: int) -> None:
    """Flip bytes in the version's ONNX file: its sha256 no longer matches the manifest."""
    path = store / name / str(version) / "model.onnx"
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-16:] = bytes(16)
    path.write_bytes(bytes(data))


def test_a_broken_canary_is_listed_and_refused_while_the_default_serves(
    writable_store, videos
) -> None:
    ModelStore(writable_store).promote("tiny", 2, "canary")
    damage(writable_store, "tiny", 2)
    with TestClient(create_app(settings_for(writable_store))) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["loaded"] == ["tiny@1"]
        (broken,) = ready.json()["broken"].items()
        assert broken[0] == "tiny@2" and "IntegrityError" in broken[1]

        versions = client.get("/models/tiny").json()["versions"]
        assert [(v["version"], v["state"]) for v in versions] == [(1, "loaded"), (2, "broken")]
        assert "model.onnx" in versions[1]["load_error"]

        refused = post_video(client, videos["h264.mp4"], alias="canary")
        assert refused.status_code == 503
        assert refused.json()["error"] == "version_broken"
        assert "version 2 of 'tiny' failed to load" in refused.json()["message"]
        assert post_video(client, videos["h264.mp4"]).status_code == 200

        text = client.get("/metrics").text
        assert metric(text, "actserve_model_broken", model="tiny", version="2") == 1


def test_a_broken_default_version_is_not_ready_but_answers(writable_store) -> None:
    damage(writable_store, "tiny", 1)
    with TestClient(create_app(settings_for(writable_store))) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503 and list(ready.json()["broken"]) == ["tiny@1"]
        assert client.get("/healthz").status_code == 200


def test_an_unreadable_alias_file_is_a_model_problem_not_a_crash(writable_store) -> None:
    (writable_store / "tiny" / "aliases.json").write_text("{not json")
    with TestClient(create_app(settings_for(writable_store))) as client:
        ready = client.get("/readyz").json()
        assert not ready["ready"] and "tiny" in ready["broken"]
        problems = client.get("/models/tiny").json()["problems"]
        assert any(p.startswith("not served:") for p in problems)


def test_store_deletes_an_alias(writable_store) -> None:
    store = ModelStore(writable_store)
    store.promote("tiny", 2, "canary")
    assert store.delete_alias("tiny", "canary").version == 2
    assert set(store.aliases("tiny")) == {"stable"}
    with pytest.raises(AliasNotFoundError, match="no alias 'canary'"):
        store.delete_alias("tiny", "canary")


def test_admin_deletes_an_alias_and_its_version_drains(writable_store, videos) -> None:
    ModelStore(writable_store).promote("tiny", 2, "canary")
    with TestClient(create_app(settings_for(writable_store, admin_token=TOKEN))) as client:
        assert client.get("/readyz").json()["loaded"] == ["tiny@1", "tiny@2"]
        deleted = client.delete("/admin/models/tiny/aliases/canary", headers=AUTH)
        assert deleted.status_code == 200, deleted.text
        assert "was version 2" in deleted.json()["message"]
        assert deleted.json()["loaded"] == ["tiny@1"]
        gone = post_video(client, videos["h264.mp4"], alias="canary")
        assert gone.status_code == 404 and gone.json()["error"] == "model_not_found"
        again = client.delete("/admin/models/tiny/aliases/canary", headers=AUTH)
        assert again.status_code == 404
        # Without `stable`, requests naming only the model get the newest version.
        assert client.delete("/admin/models/tiny/aliases/stable", headers=AUTH).status_code == 200
        assert client.get("/models/tiny").json()["routed_version"] == 2
