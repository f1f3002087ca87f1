"""The URL allow-list and SSRF rules (service/net_policy.py)."""

from __future__ import annotations

import pytest

from service.errors import UrlNotAllowed
from service.net_policy import UrlPolicy, redact

SCHEMES = {"rtsp", "http", "https", "udp"}


def policy(*entries: str) -> UrlPolicy:
    return UrlPolicy.parse(entries, schemes=SCHEMES, setting="ACTSERVE_STREAMS_ALLOWED")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("rtsp://127.0.0.1/cam", "loopback"),
        ("http://10.1.2.3/live.ts", "private"),
        ("http://169.254.169.254/latest/meta-data", "cloud metadata"),
        ("http://[fd00:ec2::254]/", "cloud metadata"),
        ("http://[::1]:8000/", "loopback"),
        ("udp://0.0.0.0:5000", "unspecified"),
        ("http://localhost:8000/", "loopback"),
    ],
)
def test_non_public_addresses_are_refused_by_default(url: str, why: str) -> None:
    with pytest.raises(UrlNotAllowed, match=why) as refused:
        policy().check(url)
    assert "ACTSERVE_STREAMS_ALLOWED" in str(refused.value)


def test_a_listed_network_allows_its_addresses_and_no_other() -> None:
    allowed = policy("127.0.0.0/8", "10.20.0.0/16")
    assert allowed.check("http://127.0.0.1:9000/live.ts").port == 9000
    assert allowed.check("rtsp://10.20.3.4/cam").addresses[0].exploded == "10.20.3.4"
    with pytest.raises(UrlNotAllowed, match="private"):
        allowed.check("rtsp://10.21.0.1/cam")
    with pytest.raises(UrlNotAllowed, match="cloud metadata"):
        allowed.check("http://169.254.169.254/")


def test_patterns_must_match_and_never_open_private_addresses() -> None:
    allowed = policy("rtsp://127.0.0.1/cam-*", "http://*")
    with pytest.raises(UrlNotAllowed, match="matches no URL pattern"):
        allowed.check("rtsp://8.8.8.8/other")
    assert allowed.check("http://8.8.8.8/live.ts").host == "8.8.8.8"
    assert allowed.check("HTTP://user:pw@8.8.8.8/x").scheme == "http"  # user info ignored
    with pytest.raises(UrlNotAllowed, match="loopback"):  # matched, but not a listed network
        allowed.check("rtsp://127.0.0.1/cam-1")
    assert policy("rtsp://127.0.0.1/cam-*", "127.0.0.1/32").check("rtsp://127.0.0.1/cam-1")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "scheme 'file'"),
        ("concat:http://a|http://b", "scheme 'concat'"),
        ("rtsp:///nohost", "names no host"),
        ("http://no-such-host.invalid/x", "cannot resolve"),
        ("http://[::1/", "not a valid URL"),
    ],
)
def test_unusable_urls_are_refused_with_a_reason(url: str, message: str) -> None:
    with pytest.raises(UrlNotAllowed, match=message):
        policy("0.0.0.0/0", "::/0").check(url)


def test_a_bad_entry_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="neither a URL pattern"):
        policy("cam.example.com")


def test_passwords_are_redacted() -> None:
    assert redact("rtsp://admin:secret@cam/live") == "rtsp://admin:***@cam/live"
    assert redact("rtsp://cam/live") == "rtsp://cam/live"
