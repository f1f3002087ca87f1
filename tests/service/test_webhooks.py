"""service/webhooks.py on its own: signed as Standard Webhooks verify, retried with growing
waits until the time is up, never sent to a refused address."""

from __future__ import annotations

import asyncio
import base64
import itertools
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from standardwebhooks import Webhook

from service.net_policy import UrlPolicy
from service.webhooks import WebhookSender

SECRET = "whsec_" + base64.b64encode(b"a-webhook-secret-of-24by").decode()


class Failing(BaseHTTPRequestHandler):
    calls: ClassVar[list[tuple[bytes, dict]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Failing.calls.append((body, {k.lower(): v for k, v in self.headers.items()}))
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Failing.calls.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def test_retries_are_bounded_in_time_and_each_is_signed(receiver) -> None:
    policy = UrlPolicy.parse(["127.0.0.0/8"], schemes={"http"})
    sender = WebhookSender(SECRET, policy, give_up_after_s=1.0, first_retry_s=0.05)
    seen = []
    delivery = asyncio.run(sender.deliver(receiver, {"type": "t"}, on_attempt=seen.append))
    assert not delivery.delivered
    assert 3 <= len(delivery.attempts) == len(seen) == len(Failing.calls) <= 6
    assert [a.number for a in seen] == list(range(1, len(seen) + 1))
    assert all(a.status_code == 503 for a in seen)
    gaps = [b.at - a.at for a, b in itertools.pairwise(seen)]
    assert gaps[-1] > gaps[0]  # the waits grow
    for body, headers in Failing.calls:
        assert Webhook(SECRET).verify(body, headers) == {"type": "t"}
    assert len({h["webhook-id"] for _, h in Failing.calls}) == 1


def test_a_refused_address_is_never_contacted(receiver) -> None:
    sender = WebhookSender(SECRET, UrlPolicy.parse([], schemes={"http"}), first_retry_s=0.01)
    delivery = asyncio.run(sender.deliver(receiver, {"type": "t"}))
    assert not delivery.delivered and len(delivery.attempts) == 1
    assert "loopback" in (delivery.attempts[0].error or "")
    assert Failing.calls == []
