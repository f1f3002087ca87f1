"""Structured logs: one line per request with its id, model, version, status, error code and
stage timings; the decode workers' lines carry the same id."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.logs import configure_logging
from tests.service.conftest import post_video, settings_for


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    import service.logs

    service.logs._active = None


def json_lines(text: str) -> list[dict]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_json_logs_one_line_per_request_with_the_workers_lines_tagged(
    store_root, videos, capfd, restore_logging
) -> None:
    configure_logging("json", "debug")
    with TestClient(create_app(settings_for(store_root, decode_workers=1))) as client:
        capfd.readouterr()
        with videos["h264.mp4"].open("rb") as f:
            served = client.post(
                "/classify",
                headers={"X-Request-ID": "trace-me-1"},
                files={"video": ("clip.mp4", f, "video/mp4")},
            )
        assert served.status_code == 200
        missing = post_video(client, videos["h264.mp4"], model="nope")
        assert missing.status_code == 404
    lines = json_lines(capfd.readouterr().err)
    access = [line for line in lines if line["logger"] == "actserve.access"]
    (ok,) = [line for line in access if line["request_id"] == "trace-me-1"]
    assert (ok["method"], ok["path"], ok["status"]) == ("POST", "/classify", 200)
    assert (ok["model"], ok["version"], ok["level"]) == ("tiny", 1, "INFO")
    for stage in ("upload", "decode_wait", "decode", "queue", "inference", "total"):
        assert ok[f"{stage}_ms"] >= 0, stage
    assert "error" not in ok
    refused = next(line for line in access if line.get("status") == 404)
    assert refused["error"] == "model_not_found" and refused["request_id"] != "-"
    # The decode worker (another process) logged its jobs under the request's id.
    worker = [line for line in lines if line["logger"] == "actserve.decode.worker"]
    assert any(line["request_id"] == "trace-me-1" for line in worker), worker
    assert {line["process"] for line in worker} != {ok["process"]}


def test_text_logs_are_readable_and_carry_the_id(store_root, videos, capfd, restore_logging):
    configure_logging("text", "info")
    with TestClient(create_app(settings_for(store_root))) as client:
        capfd.readouterr()
        client.get("/healthz", headers={"X-Request-ID": "probe-1"})  # DEBUG: not shown
        client.get("/models/nope", headers={"X-Request-ID": "abc-42"})
    err = capfd.readouterr().err
    assert "probe-1" not in err
    (line,) = [line for line in err.splitlines() if "abc-42" in line]
    assert "actserve.access [abc-42] GET /models/nope status=404" in line
    assert "error=model_not_found" in line
