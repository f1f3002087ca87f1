"""The bundled demo model: what ships in the package, and its held-out accuracy on freshly
generated videos, encoded to real files and sent through the HTTP service."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from typer.testing import CliRunner

from actserve.cli import app
from actserve.demo.synthetic import ACTIONS, render_video, write_video
from actserve.demo.train import DEMO_NAME
from model_store import ModelStore
from service.settings import BUNDLED_STORE, Settings
from tests.service.conftest import LiveServer

#: Seeds far from the training run's (which draws from seed 0 and 10,000).
HELD_OUT_SEED = 7_000_000
VIDEOS_PER_ACTION = 10


def test_the_bundled_store_holds_a_verified_trained_demo_model() -> None:
    store = ModelStore(BUNDLED_STORE)
    assert store.default_model() == DEMO_NAME
    manifest = store.resolve(DEMO_NAME)
    assert store.verify(DEMO_NAME, manifest.version) == manifest
    assert store.is_indexed(DEMO_NAME, manifest.version)  # the manifest itself is checked too
    assert manifest.trained and "synthetic" in manifest.description
    assert manifest.spec.labels == ACTIONS and manifest.backbone == "r2plus1d_18"
    assert manifest.artifact("onnx").parity.passed
    size = sum(d.bytes for d in manifest.files.values())
    assert size <= 10 * 2**20, f"the bundled store must stay small: {size:,} bytes"


@pytest.fixture(scope="module")
def held_out_videos(tmp_path_factory):
    """Fresh scenes of every action, half H.264 mp4, half VP9 webm, at 320×240."""
    root = tmp_path_factory.mktemp("held_out")
    jobs = []
    for a, action in enumerate(ACTIONS):
        for i in range(VIDEOS_PER_ACTION):
            suffix = ".mp4" if i % 2 == 0 else ".webm"
            jobs.append((action, HELD_OUT_SEED + 100 * a + i, root / f"{a}_{i}{suffix}"))

    def make(job):
        action, seed, path = job
        write_video(render_video(action, seed=seed, height=240, width=320), str(path))
        return action, path

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(make, jobs))


@pytest.mark.slow
def test_held_out_accuracy_through_http_is_at_least_95_percent(held_out_videos) -> None:
    settings = Settings(decode_workers=2, max_delay_ms=5)  # the defaults: the bundled store
    with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=60) as client:

        def classify(item):
            action, path = item
            with path.open("rb") as f:
                response = client.post("/classify", files={"video": (path.name, f)})
            assert response.status_code == 200, response.text
            return action, response.json()["top_k"][0]["label"], path.suffix

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(classify, held_out_videos))
    wrong = [(truth, guess, suffix) for truth, guess, suffix in results if truth != guess]
    accuracy = 1 - len(wrong) / len(results)
    assert len(results) == len(ACTIONS) * VIDEOS_PER_ACTION
    assert accuracy >= 0.95, f"top-1 {accuracy:.1%}; mistakes: {wrong}"
    for suffix in (".mp4", ".webm"):  # both codecs are classified well, not just one
        mine = [r for r in results if r[2] == suffix]
        assert sum(t == g for t, g, _ in mine) / len(mine) >= 0.9


def test_classify_command_prints_the_top_k(held_out_videos) -> None:
    action, path = held_out_videos[0]
    runner = CliRunner()
    with LiveServer(Settings(decode_workers=1)) as server:
        table = runner.invoke(app, ["classify", str(path), "--url", server.url, "--top-k", "3"])
        assert table.exit_code == 0, table.output
        assert f"{DEMO_NAME} v1" in table.output and action in table.output
        as_json = runner.invoke(app, ["classify", str(path), "--url", server.url, "--json"])
        assert as_json.exit_code == 0 and '"top_k"' in as_json.output
    refused = runner.invoke(app, ["classify", str(path), "--url", server.url])
    assert refused.exit_code == 1 and "start one with `actserve serve`" in refused.output
