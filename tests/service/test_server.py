"""The service on a real uvicorn over loopback: what only the network shows (early 413,
disconnects), admission control under concurrency, and a bounded load test."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.service.conftest import LiveServer, metric, post_video, settings_for


def test_an_oversized_stream_is_refused_before_it_ends(store_root) -> None:
    """A chunked body with no length: the 413 arrives while the client still holds most of
    the body back, so the server stopped reading early."""
    with LiveServer(settings_for(store_root, max_upload_bytes=50_000)) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            conn.sendall(
                b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: video/mp4\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            chunk = b"\0" * 16_384
            for _ in range(4):  # 64 KiB of a body that would go on for megabytes
                conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            reply = b""
            while b"}" not in reply:  # the headers and the JSON body may come in two reads
                data = conn.recv(65536)
                if not data:
                    break
                reply += data
            reply = reply.decode("latin-1")
        assert reply.startswith("HTTP/1.1 413"), reply[:200]
        assert '"error":"upload_too_large"' in reply and "ACTSERVE_MAX_UPLOAD_BYTES" in reply
        declared = httpx.post(
            f"{server.url}/classify",
            content=b"\0" * 60_000,
            headers={"Content-Type": "video/mp4"},
        )
        assert declared.status_code == 413 and declared.json()["maximum"] == 50_000


def test_beyond_the_queue_bound_only_429s_with_retry_after(store_root, videos) -> None:
    """Two 6-view requests fill a 12-view queue while the batch waits its 1.5 s delay; every
    other request is refused at once, with Retry-After."""
    settings = settings_for(store_root, max_queue_views=12, max_delay_ms=1500, max_batch_views=64)
    path = videos["h264.mp4"]
    with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda _: post_video(client, path), range(8)))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200, 200] + [429] * 6
        for refused in (r for r in responses if r.status_code == 429):
            assert int(refused.headers["Retry-After"]) >= 1
            assert refused.json()["error"] == "overloaded"
            assert refused.json()["retry_after_s"] == int(refused.headers["Retry-After"])
        text = client.get("/metrics").text
        assert metric(text, "actserve_rejections_total", reason="overloaded") == 6
        refusals = dict(endpoint="/classify", model="tiny", version="1", status="429")
        assert metric(text, "actserve_requests_total", **refusals) == 6


def test_a_request_past_its_deadline_gets_504_and_leaves_the_queue(store_root, videos) -> None:
    settings = settings_for(store_root, request_timeout_s=0.5, max_delay_ms=3000)
    with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        response = post_video(client, videos["h264.mp4"])
        assert response.status_code == 504 and response.json()["error"] == "deadline_exceeded"
        text = client.get("/metrics").text
        assert metric(text, "actserve_queue_depth_views", model="tiny", version="1") == 0


def test_a_client_that_leaves_has_its_queued_work_dropped(store_root, videos) -> None:
    settings = settings_for(store_root, max_delay_ms=2000)
    with LiveServer(settings) as server:
        with pytest.raises(httpx.ReadTimeout):
            post_video(httpx.Client(base_url=server.url, timeout=0.6), videos["h264.mp4"])
        time.sleep(2.5)  # past the batch delay: the views would have run by now
        text = httpx.get(f"{server.url}/metrics").text
        assert metric(text, "actserve_rejections_total", reason="client_disconnected") == 1
        assert metric(text, "actserve_inference_items_total", model="tiny", version="1") == 0
        assert metric(text, "actserve_queue_depth_views", model="tiny", version="1") == 0


def test_64_concurrent_requests_all_succeed_in_shared_batches(store_root, videos) -> None:
    """With room for all of them at the door, 64 requests at once share batches."""
    settings = settings_for(
        store_root,
        max_delay_ms=20,
        max_batch_views=32,
        max_pending_decodes=64,
        max_decode_wait_s=None,
    )
    path = videos["h264.mp4"]
    with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        with ThreadPoolExecutor(64) as pool:
            responses = list(pool.map(lambda _: post_video(client, path), range(64)))
        assert [r.status_code for r in responses] == [200] * 64
        assert len({tuple(e["index"] for e in r.json()["top_k"]) for r in responses}) == 1
        text = client.get("/metrics").text
    labels = {"model": "tiny", "version": "1"}
    items = metric(text, "actserve_inference_items_total", **labels)
    executions = metric(text, "actserve_inference_executions_total", **labels)
    assert items == 64 * 6
    assert items / executions > 1  # batches were shared across requests
    assert metric(text, "actserve_batch_size_views_count", **labels) == executions
    served = dict(endpoint="/classify", status="200", **labels)
    assert metric(text, "actserve_requests_total", **served) == 64
    assert metric(text, "actserve_decoded_frames_total") > 0
