"""Admission at the door: refused before the body is read when uploads or the decode backlog
are full (429 with an honest Retry-After), 503 while draining, and the gauges an autoscaler
reads."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.engine import Admission
from service.errors import NotReady, Overloaded
from service.settings import AdmissionSettings
from service.video import DecodePool, DecodeSettings, VideoLimits
from tests.service.conftest import LiveServer, metric, post_video, settings_for
from tests.service.video import jobs


def _read_reply(conn: socket.socket) -> str:
    reply = b""
    while b"}" not in reply:
        data = conn.recv(65536)
        if not data:
            break
        reply += data
    return reply.decode("latin-1")


def test_a_full_door_refuses_before_reading_the_body(store_root, videos) -> None:
    """One upload may be in progress: a second is refused as soon as its headers arrive,
    though its body is never sent; once the first is done, the door is open again."""
    settings = settings_for(store_root, max_concurrent_uploads=1)
    head = (
        b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: video/mp4\r\n"
        b"Content-Length: 100000\r\n\r\n"
    )
    with LiveServer(settings) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
            slow.sendall(head + b"\0" * 1000)  # holds the only upload slot
            with httpx.Client(base_url=server.url, timeout=10) as client:
                gauges = client.get("/metrics").text
                assert metric(gauges, "actserve_uploads_in_progress") == 1
                with socket.create_connection(("127.0.0.1", server.port), timeout=10) as second:
                    second.sendall(head)  # headers only: no byte of the body
                    reply = _read_reply(second)
        assert reply.startswith("HTTP/1.1 429"), reply[:300]
        assert "retry-after: " in reply.lower() and "ACTSERVE_MAX_CONCURRENT_UPLOADS" in reply
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert post_video(client, videos["h264.mp4"]).status_code == 200
            text = client.get("/metrics").text
        assert metric(text, "actserve_uploads_in_progress") == 0
        assert metric(text, "actserve_requests_in_flight") == 0  # classify requests only
        assert metric(text, "actserve_rejections_total", reason="overloaded") == 1
        assert metric(text, "actserve_decode_backlog_requests") == 0
        assert metric(text, "actserve_decode_workers") == 2


@pytest.mark.parametrize(
    ("settings", "bound"),
    [
        (DecodeSettings(workers=1, max_pending=2), "ACTSERVE_MAX_PENDING_DECODES"),
        (DecodeSettings(workers=1, max_pending=9, max_wait_s=0.5), "ACTSERVE_MAX_DECODE_WAIT_S"),
    ],
)
def test_a_full_decode_backlog_refuses_with_its_drain_time(settings, bound: str) -> None:
    """Two jobs hold the backlog of one worker (by count, or by the wait it means): the door
    says 429, and Retry-After covers the backlog at the measured (here: initial, 1 s) decode
    time."""

    async def scenario() -> None:
        async with DecodePool(settings, VideoLimits()) as pool:
            admission = Admission(AdmissionSettings(), pool)
            admission.admit("x")  # room
            held = [
                asyncio.create_task(pool.run(jobs.sleep_then, 0.5, str(i), client="a"))
                for i in range(2)
            ]
            await asyncio.sleep(0.1)
            with pytest.raises(Overloaded, match=bound) as caught:
                admission.admit("x")
            assert caught.value.retry_after == 2
            await asyncio.gather(*held)
            admission.admit("x")  # room again

    asyncio.run(scenario())


def test_draining_refuses_with_503(store_root, videos) -> None:
    with TestClient(create_app(settings_for(store_root))) as client:
        client.app.state.engine.drain()
        response = post_video(client, videos["h264.mp4"])
        assert response.status_code == 503 and response.json()["error"] == "not_ready"
        assert client.get("/readyz").status_code == 503


def test_the_client_header_names_who_is_asking() -> None:
    by_peer = Admission(AdmissionSettings(), pool=None)  # type: ignore[arg-type]
    assert by_peer.client_of({"x-forwarded-for": "10.0.0.9"}, "127.0.0.1") == "127.0.0.1"
    by_header = Admission(AdmissionSettings(client_header="x-forwarded-for"), pool=None)  # type: ignore[arg-type]
    assert by_header.client_of({"x-forwarded-for": "10.0.0.9, 10.0.0.1"}, "1.2.3.4") == "10.0.0.9"
    assert by_header.client_of({}, "1.2.3.4") == "1.2.3.4"
    with pytest.raises(NotReady):
        by_peer.draining = True
        by_peer.admit("x")


def test_a_request_over_the_decode_budget_gets_422_naming_it(store_root, videos) -> None:
    settings = settings_for(store_root, max_decode_pixels=100_000)
    with TestClient(create_app(settings)) as client:
        response = post_video(client, videos["one_gop.mp4"])
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "limit_exceeded" and body["limit"] == "decode_pixels"
    assert body["maximum"] == 100_000 and "frames to decode" in body["message"]
