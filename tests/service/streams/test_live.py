"""Live streams end to end: a real uvicorn on loopback, real streams served by PyAV's FFmpeg,
the bundled demo model (which knows the synthetic motions the streams show)."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.embedded import EmbeddedServer
from service.settings import BUNDLED_STORE, Settings
from tests.service.streams.conftest import open_fds, wait_for

SECRET = "whsec_" + "c2VjcmV0LWZvci10aGUtdGVzdHM="  # base64("secret-for-the-tests")


def stream_settings(jobs_dir: Path, **overrides: object) -> Settings:
    values = dict(
        store=BUNDLED_STORE,
        decode_workers=1,
        streams_allowed=["127.0.0.0/8"],
        jobs_dir=jobs_dir,
        # Generous: the box running the suite may be loaded (a silent server costs a wait).
        streams_connect_timeout_s=5,
        streams_read_timeout_s=5,
        streams_max_lag_s=30,  # a starved reader catches up rather than skip frames
        streams_reconnect_min_s=0.2,
        streams_reconnect_max_s=1.0,
        webhook_secret=SECRET,
    )
    return Settings(**{**values, **overrides})


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    settings = stream_settings(tmp_path_factory.mktemp("jobs"))
    with EmbeddedServer(settings) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def add(client: httpx.Client, url: str, **definition: object) -> str:
    response = client.post("/streams", json={"url": url, **definition})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def remove(client: httpx.Client, stream_id: str) -> None:
    assert client.delete(f"/streams/{stream_id}").status_code == 204


def sse_events(client: httpx.Client, stream_id: str, until, timeout: float = 60) -> list[dict]:
    """Read the stream's SSE until `until(events)` holds."""
    events: list[dict] = []
    deadline = time.monotonic() + timeout
    with client.stream("GET", f"/streams/{stream_id}/events", timeout=timeout) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
                if until(events):
                    return events
            if time.monotonic() > deadline:
                break
    raise AssertionError(f"the events never got there: {events}")


def readers() -> list[multiprocessing.process.BaseProcess]:
    """The stream reader processes alive (the decode pool's workers are not theirs)."""
    return [p for p in multiprocessing.active_children() if p.name.startswith("stream-")]


def no_leaks(baseline_fds: int) -> None:
    """No reader process left, and no file descriptors beyond a little slack."""
    deadline = time.monotonic() + 10
    while readers() or open_fds() > baseline_fds + 4:
        if time.monotonic() > deadline:
            raise AssertionError(f"leaked: {readers()}, fds {open_fds()} vs {baseline_fds}")
        time.sleep(0.2)


@pytest.mark.slow
def test_a_stream_raises_the_action_it_shows_as_sse_events_and_counters(
    service: httpx.Client, ts_server
) -> None:
    source = ts_server("--actions", "standing still,rotating clockwise", "--seconds-each", "4")
    service.get("/healthz")
    baseline = open_fds()
    stream_id = add(service, source.url, name="door", events={"high": 0.6, "low": 0.4})
    events = sse_events(
        service,
        stream_id,
        lambda seen: any(e["label"] == "rotating clockwise" for e in seen),
    )
    event = next(e for e in events if e["label"] == "rotating clockwise")
    assert event["type"] == "start" and event["score"] >= 0.6
    assert event["stream"] == stream_id and event["start_time"] and event["start_stream_s"] >= 0
    stream = service.get(f"/streams/{stream_id}").json()
    assert stream["state"] == "live" and stream["serving"] == "demo-actions@1"
    stats = stream["stats"]
    assert stats["windows"] > 0 and stats["events"] >= 1 and stats["frame_size"] == [120, 160]
    assert stats["input_fps"] > 0 and stats["sample_fps"] == 6.0  # 24 fps, every 4th frame
    metrics = service.get("/metrics").text
    sample = f'label="rotating clockwise",stream="{stream_id}",type="start"'
    assert f"actserve_stream_events_total{{{sample}}}" in metrics
    assert [s["id"] for s in service.get("/streams").json()["streams"]] == [stream_id]
    remove(service, stream_id)
    assert service.get(f"/streams/{stream_id}").status_code == 404
    assert f'stream="{stream_id}"' not in service.get("/metrics").text
    no_leaks(baseline)


@pytest.mark.slow
def test_failing_sources_reconnect_and_leave_the_others_alone(
    service: httpx.Client, ts_server, silent_url: str
) -> None:
    """A source that drops out and comes back, one that never answers, one that sends garbage
    and one faster than real time, beside a healthy stream: no 5xx, the healthy stream keeps
    its windows, every failure is reported and nothing leaks."""
    sources = [ts_server(), ts_server("--drop-after", "3"), ts_server("--corrupt")]
    fast_source = ts_server("--speed", "4")
    service.get("/healthz")  # the client's connection is open before the count
    baseline = open_fds()
    healthy, flaky, corrupt = (add(service, source.url) for source in sources)
    silent = add(service, silent_url)
    fast = add(service, fast_source.url, stride_s=0.1)

    back = wait_for(
        service, flaky, lambda s: s["stats"]["reconnects"] >= 1 and s["state"] == "live"
    )
    assert "ended" in back["last_error"] or "retrying" in back["last_error"]
    wait_for(service, flaky, lambda s: s["stats"]["windows"] > back["stats"]["windows"])
    stuck = wait_for(service, silent, lambda s: s["last_error"] is not None)
    assert stuck["state"] in ("connecting", "reconnecting") and stuck["stats"]["windows"] == 0
    broken = wait_for(service, corrupt, lambda s: s["stats"]["reconnects"] >= 1)
    assert broken["stats"]["windows"] == 0 and broken["last_error"]
    # Ahead of real time (24 fps), and classified.
    wait_for(service, fast, lambda s: s["stats"]["windows"] > 0 and s["stats"]["input_fps"] > 30)
    first = wait_for(service, healthy, lambda s: s["stats"]["windows"] >= 3)
    later = wait_for(
        service, healthy, lambda s: s["stats"]["windows"] >= first["stats"]["windows"] + 3
    )
    # (No reconnection count is asserted: on a saturated box a read timeout may fire.)
    assert later["state"] == "live" and later["stats"]["dropped_frames"] == 0
    # The fast source cannot push a backlog: what it is ahead by is dropped, and counted.
    wait_for(
        service,
        fast,
        lambda s: s["stats"]["dropped_windows"] + s["stats"]["dropped_frames"] > 0,
        timeout=60,
    )
    assert service.get("/healthz").status_code == 200
    for stream_id in (healthy, flaky, silent, corrupt, fast):
        remove(service, stream_id)
    assert service.get("/streams").json()["streams"] == []
    no_leaks(baseline)


@pytest.mark.slow
def test_streams_added_and_removed_under_load_never_fail(service: httpx.Client, ts_server) -> None:
    source = ts_server()
    service.get("/healthz")
    baseline = open_fds()
    keep = add(service, source.url)
    for _ in range(3):
        ids = [add(service, source.url, stride_s=0.25) for _ in range(3)]
        for stream_id in ids:
            response = service.get(f"/streams/{stream_id}")
            assert response.status_code == 200
        for stream_id in ids:
            remove(service, stream_id)
    kept = wait_for(service, keep, lambda s: s["stats"]["windows"] >= 2)
    assert kept["state"] == "live"
    remove(service, keep)
    no_leaks(baseline)


@pytest.mark.slow
def test_events_reach_the_webhook_signed_and_retried(service: httpx.Client, ts_server) -> None:
    received: list[tuple[bytes, dict[str, str]]] = []
    attempts = []

    async def hook(request: Request) -> Response:
        attempts.append(1)
        if len(attempts) == 1:
            return Response(status_code=503)  # the first attempt fails: retried
        received.append((await request.body(), dict(request.headers)))
        return Response(status_code=204)

    receiver = EmbeddedServer(app=Starlette(routes=[Route("/hook", hook, methods=["POST"])]))
    with receiver:
        source = ts_server("--actions", "standing still")
        stream_id = add(
            service,
            source.url,
            webhook_url=f"{receiver.url}/hook",
            events={"high": 0.5, "low": 0.3, "windows": 1, "labels": ["standing still"]},
        )
        deadline = time.monotonic() + 60
        while not received and time.monotonic() < deadline:
            time.sleep(0.2)
        remove(service, stream_id)
    assert received, "no event reached the webhook"
    body, headers = received[0]
    event = Webhook(SECRET).verify(body, headers)  # raises unless signed with the secret
    assert event["label"] == "standing still" and event["type"] == "start"
    assert len(attempts) >= 2


def test_bad_definitions_are_4xx_with_reasons(service: httpx.Client, silent_url: str) -> None:
    def refused(status: int, code: str, **definition: object) -> str:
        response = service.post("/streams", json={"url": silent_url, **definition})
        assert response.status_code == status, response.text
        assert response.json()["error"] == code
        return response.json()["message"]

    assert "scheme 'file'" in refused(403, "url_not_allowed", url="file:///etc/passwd")
    assert "cloud metadata" in refused(403, "url_not_allowed", url="http://169.254.169.254/")
    refused(404, "model_not_found", model="no-such-model")
    refused(400, "bad_request", events={"high": 0.3, "low": 0.6})
    assert "no label" in refused(400, "bad_request", events={"labels": ["juggling"]})
    assert "private" in refused(403, "url_not_allowed", webhook_url="http://10.0.0.1/hook")
    assert service.get("/streams/nope").status_code == 404
    assert service.get("/streams/nope/events").status_code == 404
    assert service.delete("/streams/nope").json()["error"] == "stream_not_found"


def test_loopback_needs_the_allow_list_and_webhooks_a_secret(tmp_path: Path) -> None:
    settings = stream_settings(tmp_path, streams_allowed=[], webhook_secret=None)
    with EmbeddedServer(settings) as server, httpx.Client(base_url=server.url) as client:
        response = client.post("/streams", json={"url": "http://127.0.0.1:9/live.ts"})
        assert response.status_code == 403 and "loopback" in response.json()["message"]
        response = client.post(
            "/streams", json={"url": "http://8.8.8.8/x.ts", "webhook_url": "http://8.8.8.8/h"}
        )
        assert response.status_code == 400
        assert "ACTSERVE_WEBHOOK_SECRET" in response.json()["message"]


@pytest.mark.slow
def test_streams_come_back_after_a_restart(tmp_path: Path, ts_server) -> None:
    source = ts_server()
    settings = stream_settings(tmp_path)
    with EmbeddedServer(settings) as server, httpx.Client(base_url=server.url) as client:
        stream_id = add(client, source.url, name="restarted", stride_s=0.25)
        wait_for(client, stream_id, lambda s: s["state"] == "live")
    assert not readers()
    with (
        EmbeddedServer(stream_settings(tmp_path)) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        (stream,) = client.get("/streams").json()["streams"]
        assert stream["id"] == stream_id and stream["name"] == "restarted"
        assert stream["stride_s"] == 0.25
        wait_for(client, stream_id, lambda s: s["stats"]["windows"] > 0)
        remove(client, stream_id)
    with (
        EmbeddedServer(stream_settings(tmp_path)) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        assert client.get("/streams").json()["streams"] == []


@pytest.mark.slow
def test_the_client_and_the_command_line(service: httpx.Client, ts_server) -> None:
    from typer.testing import CliRunner

    from actserve.cli import app
    from actserve.client import AsyncClient, NotFoundError

    source = ts_server("--actions", "standing still")
    url = str(service.base_url)
    runner = CliRunner()
    added = runner.invoke(
        app,
        [
            "streams",
            "add",
            source.url,
            "--url",
            url,
            "--windows",
            "1",
            "--label",
            "standing still",
            "--name",
            "cli",
        ],
    )
    assert added.exit_code == 0, added.output
    stream_id = added.output.strip()

    async def first_event() -> tuple[str, str]:
        async with AsyncClient(url) as client:
            (stream,) = await client.list_streams()
            assert stream.id == stream_id and stream.name == "cli"
            async for event in client.stream_events(stream_id):
                return event.label, event.type.value
            raise AssertionError("the events ended")

    assert asyncio.run(asyncio.wait_for(first_event(), 60)) == ("standing still", "start")
    listed = runner.invoke(app, ["streams", "list", "--url", url])
    assert listed.exit_code == 0 and stream_id in listed.output
    assert runner.invoke(app, ["streams", "rm", stream_id, "--url", url]).exit_code == 0
    gone = runner.invoke(app, ["streams", "rm", stream_id, "--url", url])
    assert gone.exit_code == 1 and "stream_not_found" in gone.output

    async def missing() -> None:
        async with AsyncClient(url) as client:
            async for _ in client.stream_events(stream_id):
                pass

    with pytest.raises(NotFoundError):
        asyncio.run(missing())
