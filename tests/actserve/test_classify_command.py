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


def test_several_files_and_standard_input(url, videos, tmp_path) -> None:
    h264, vp9 = videos["h264.mp4"], videos["vp9.webm"]
    both = runner.invoke(app, ["classify", str(h264), str(vp9), "--url", url, "--json"])
    assert both.exit_code == 0, both.output
    answers = json.loads(both.output)
    assert [a["video"]["codec"] for a in answers] == ["h264", "vp9"]
    piped = runner.invoke(app, ["classify", "-", "--url", url, "--json"], input=h264.read_bytes())
    assert piped.exit_code == 0, piped.output
    assert json.loads(piped.output)["top_k"] == answers[0]["top_k"]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    mixed = runner.invoke(app, ["classify", str(broken), str(h264), "--url", url])
    assert mixed.exit_code == 1  # one failed: its line, and the other's table
    assert "broken.mp4: 415 not_a_video" in mixed.output and "h264.mp4: tiny v1" in mixed.output
    absent = runner.invoke(app, ["classify", str(tmp_path / "nope.mp4"), "--url", url])
    assert absent.exit_code == 1 and "no such video file" in absent.output
