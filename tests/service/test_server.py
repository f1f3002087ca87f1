"""The service on a real uvicorn over loopback: what only the network shows (early 413,
disconnects), admission control under concurrency, and a bounded load test."""

from __future__ import annotations

import json
import os
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
    settings = settings_for(
        store_root, max_queue_views=12, max_delay_ms=1500, max_batch_views=64, delay_when_idle=True
    )
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
    settings = settings_for(
        store_root, request_timeout_s=0.5, max_delay_ms=3000, delay_when_idle=True
    )
    with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        response = post_video(client, videos["h264.mp4"])
        assert response.status_code == 504 and response.json()["error"] == "deadline_exceeded"
        text = client.get("/metrics").text
        assert metric(text, "actserve_queue_depth_views", model="tiny", version="1") == 0


def test_a_client_that_leaves_has_its_queued_work_dropped(store_root, videos) -> None:
    settings = settings_for(store_root, max_delay_ms=2000, delay_when_idle=True)
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


# ------------------------------------------------------------------ slow, oversized, draining


def _answer(conn: socket.socket) -> tuple[int, dict]:
    """Read one response to its end (the server closes these connections): status, JSON."""
    reply = b""
    while data := conn.recv(65536):
        reply += data
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower(), head
    return int(head.split()[1]), json.loads(body)


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(scope="module")
def guarded(store_root, tmp_path_factory):
    """A server with short timeouts and a small head cap; uploads spooled where tests look."""
    spool = tmp_path_factory.mktemp("spool")
    settings = settings_for(
        store_root,
        header_timeout_s=1,
        body_idle_timeout_s=1,
        max_header_bytes=4096,
        upload_dir=spool,
    )
    with LiveServer(settings) as server:
        yield server, spool


def test_slow_silent_and_short_clients_get_408_and_let_go(guarded) -> None:
    """Slowloris: connections that send nothing, half a request head, or a body that stops
    (one of them shorter than its declared length) are each answered with a JSON 408 and
    closed, and every socket and spooled file they held is released."""
    server, spool = guarded
    head = b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: video/mp4\r\n"
    stalls = {
        "nothing": b"",
        "half a head": b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Ty",
        "half a body": head + b"Content-Length: 100000\r\n\r\n" + b"\0" * 30_000,
        "a chunk, then silence": head + b"Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n",
        "an inference body, then silence": (
            b"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
            b'Content-Type: application/json\r\n\r\n{"inputs": ['
        ),
        "a multipart part, then silence": (
            b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"
            b'Content-Disposition: form-data; name="video"; filename="a.mp4"\r\n\r\nxyz'
        ),
    }
    before = _open_fds()
    connections = []
    for _ in range(10):  # 60 stalled clients
        for data in stalls.values():
            conn = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            conn.sendall(data)
            connections.append(conn)
    answers = []
    for conn in connections:
        with conn:
            answers.append(_answer(conn))
    assert {status for status, _ in answers} == {408}
    # /v2 answers in the Open Inference Protocol's shape: {"error": message, "code": code}
    errors = [
        (b["code"], b["error"]) if "code" in b else (b["error"], b["message"]) for _, b in answers
    ]
    assert {code for code, _ in errors} == {"request_timeout"}
    assert any("ACTSERVE_HEADER_TIMEOUT_S" in message for _, message in errors)
    assert any("ACTSERVE_BODY_IDLE_TIMEOUT_S" in message for _, message in errors)
    # Keep-alive: a request answered, then half of the next one, which never ends.
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /heal")
        reply = b""
        while data := conn.recv(65536):
            reply += data
    assert reply.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 408" in reply, reply
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert _open_fds() <= before + 2  # the health check's own socket may linger
    assert not list(spool.glob("actserve-upload-*"))


def test_oversized_heads_get_431_and_the_server_goes_on(guarded, videos) -> None:
    server, _ = guarded
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        cookie = b"Cookie: " + b"c" * 8000
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + cookie + b"\r\n\r\n")
        status, body = _answer(conn)
    assert status == 431 and body["error"] == "headers_too_large"
    assert "ACTSERVE_MAX_HEADER_BYTES" in body["message"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(b"GET /he\x00lthz HTTP/1.1\r\n\r\n")  # not HTTP at all
        status, body = _answer(conn)
    assert status == 400 and body["error"] == "bad_request"
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert post_video(client, videos["h264.mp4"]).status_code == 200


def test_connections_over_limit_concurrency_get_a_json_503(store_root) -> None:
    with LiveServer(settings_for(store_root, limit_concurrency=4)) as server:
        held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(4)]
        state = server.server.server_state
        try:
            _wait_for(lambda: len(state.connections) == 4, "the server accepts 4 connections")
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
                conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                reply = conn.recv(65536).decode()
            assert reply.startswith("HTTP/1.1 503") and "retry-after: 1" in reply.lower()
            assert '"error":"too_many_connections"' in reply
        finally:
            for conn in held:
                conn.close()
        _wait_for(lambda: not state.connections, "the held connections close")
        assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_a_drain_shows_in_readiness_first_and_cuts_with_a_json_503(store_root) -> None:
    """SIGTERM's path (uvicorn's should_exit): /readyz says 503 while the listener still
    accepts, for drain_grace_s; a request still running at the drain timeout gets a JSON 503
    rather than uvicorn's plain-text 500."""
    settings = settings_for(
        store_root, drain_grace_s=1.5, drain_timeout_s=1, body_idle_timeout_s=60
    )
    with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/readyz").status_code == 200
        stalled = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        stalled.sendall(
            b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: video/mp4\r\n"
            b"Content-Length: 100000\r\n\r\n" + b"\0" * 1000
        )
        state = server.server.server_state
        _wait_for(lambda: len(state.tasks) == 1, "the upload is being received")
        server.server.should_exit = True  # what uvicorn's SIGTERM handler does
        ready = None
        while ready is None or ready.status_code == 200:  # new connections: still accepted
            ready = httpx.get(f"{server.url}/readyz", timeout=30)
        assert ready.status_code == 503 and ready.json()["ready"] is False
        with stalled:
            status, body = _answer(stalled)
        assert status == 503 and body["error"] == "draining" and body["request_id"]
        assert "ACTSERVE_DRAIN_TIMEOUT_S" in body["message"]
