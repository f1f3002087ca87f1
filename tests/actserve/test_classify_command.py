"""`actserve classify` against the service on loopback: every option reaches the server,
per-clip scores and the embedding are printed, and errors come out as one line."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from actserve.cli import app
from tests.service.conftest import LiveServer, settings_for

runner = CliRunner()


@pytest.fixture(scope="module")
def url(store_root) -> Iterator[str]:
    with LiveServer(settings_for(store_root)) as server:
        yield server.url


def classify(url: str, video, *options: str):
    return runner.invoke(app, ["classify", str(video), "--url", url, *options])


def test_the_options_reach_the_server_and_the_tables_show_them(url, videos) -> None:
    path = videos["h264.mp4"]
    result = classify(
        url, path, "--model", "tiny", "--alias", "stable", "--top-k", "2", "--per-clip",
        "--embedding", "--profile", "accurate",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "tiny v1, accurate profile" in result.output
    assert "per clip" in result.output and "embedding: " in result.output
    as_json = json.loads(classify(url, path, "--version", "1", "--top-k", "3", "--json").output)
    assert as_json["version"] == 1 and len(as_json["top_k"]) == 3 and as_json["clips"] is None
    fast = json.loads(classify(url, path, "--profile", "fast", "--json").output)
    assert fast["profile"] == "fast" and fast["video"]["views"] == 1
    segmented = classify(url, path, "--segments", "--segment-score", "0")
    assert segmented.exit_code == 0, segmented.output
    assert "segments" in segmented.output and "per clip" not in segmented.output


def test_errors_are_one_line_with_status_and_code(url, videos) -> None:
    path = videos["h264.mp4"]
    missing = classify(url, path, "--model", "nope")
    assert missing.exit_code == 1 and "404 model_not_found" in missing.output
    both = classify(url, path, "--version", "1", "--alias", "stable")
    assert both.exit_code == 1 and "400 bad_request: give a version or an alias" in both.output
    bad_profile = classify(url, path, "--profile", "slow")
    assert bad_profile.exit_code == 2
