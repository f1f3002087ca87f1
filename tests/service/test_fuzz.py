"""Hostile input through the real app on a real uvicorn: videos of every allowed container and
codec, mutated (tests/service/fuzz.py), and malformed requests. Every answer is 200 or a
4xx with a JSON error body, never a 5xx, and the server still classifies afterwards.

A failure names its case (`mkv-vp9/resize/123`): `Case.parse(name).apply(seed bytes)`
rebuilds the upload; `python benchmarks/fuzz.py --case NAME` replays it.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.service import fuzz
from tests.service.conftest import LiveServer, settings_for

#: Mutated uploads per run: every seed video under every mutation kind at least once.
CASES = 10 * len(fuzz.SEEDS) + 10
ADMIN_TOKEN = "fuzz-admin-token"


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    directory = tmp_path_factory.mktemp("fuzz_seeds")
    return {name: fuzz.write_seed(name, directory).read_bytes() for name in fuzz.SEEDS}


@pytest.fixture(scope="module")
def server(store_root: Path):
    settings = settings_for(store_root, decode_timeout_s=10, admin_token=ADMIN_TOKEN)
    with LiveServer(settings) as live:
        yield live


def test_every_seed_video_is_classified(server, seeds) -> None:
    """The seeds themselves are valid videos: each container × codec pair is served."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        answers = {name: fuzz.classify(client, data) for name, data in seeds.items()}
    refused = {
        n: f"{r.status_code} {r.text[:200]}" for n, r in answers.items() if r.status_code != 200
    }
    assert not refused, refused
    codecs = {name: answers[name].json()["video"]["codec"] for name in seeds}
    assert all(codecs[name] == name.split("-")[1] for name in seeds), codecs


def test_mutated_videos_get_200_or_a_json_4xx_and_the_server_survives(server, seeds) -> None:
    with (
        httpx.Client(base_url=server.url, timeout=120) as client,
        ThreadPoolExecutor(4) as pool,
    ):
        cases = fuzz.cases(CASES) + [fuzz.Case.parse(name) for name in fuzz.FOUND]
        outcomes = list(pool.map(lambda case: fuzz.send(client, case, seeds), cases))
        failures = [f"{o.case.name} ({o.description}): {o.problem}" for o in outcomes if o.problem]
        assert not failures, "\n".join(failures)
        statuses = Counter(o.status for o in outcomes)
        # The corpus reaches past the front door: some uploads still classify, others are
        # refused for what they are (415) or for damage found while decoding (422).
        assert {200, 415, 422} <= set(statuses), statuses
        assert client.get("/healthz").status_code == 200
        assert fuzz.classify(client, seeds["mp4-h264"]).status_code == 200


@pytest.mark.parametrize("name", fuzz.HOSTILE_REQUESTS)
def test_hostile_requests_get_a_json_4xx(server, name: str) -> None:
    method, path, arguments = fuzz.HOSTILE_REQUESTS[name]
    with httpx.Client(base_url=server.url, timeout=60) as client:
        response = client.request(method, path, **arguments)
        assert 400 <= response.status_code < 500 and fuzz.problem(response) is None, (
            f"{response.status_code}: {response.text[:300]}"
        )
        assert client.get("/healthz").status_code == 200
