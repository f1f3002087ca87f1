"""Which URLs the service may open on a user's behalf: an operator's allow-list and the
server-side request forgery (SSRF) rules.

    policy = UrlPolicy.parse(["rtsp://cam-*.example.com/*", "10.20.0.0/16"], schemes={"rtsp"})
    checked = policy.check("rtsp://cam-3.example.com/live")   # or raises UrlNotAllowed
    checked.addresses                                         # what the host resolved to

An allow-list holds two kinds of entries:

- URL patterns, shell-style globs matched against the whole URL (scheme and host compared in
  lower case, user info left out): `rtsp://cam-*.example.com/*`, `udp://*:5000`. When the list
  has any, a URL must match one;
- networks in CIDR notation: `10.20.0.0/16`, `127.0.0.1/32`, `fd00::/8`. The host of every
  URL is resolved, and each address it resolves to must be public (globally routable) or lie
  in a listed network. Loopback, private, link-local (cloud metadata: 169.254.169.254,
  fd00:ec2::254), shared, reserved, multicast and unspecified addresses are refused unless a
  network entry names them; a pattern never opens them.

So an empty list allows any public URL of the right scheme, and a test that serves a stream on
127.0.0.1 must list `127.0.0.0/8`. The check resolves the name when it is called; a caller
that connects later (an FFmpeg reconnecting) calls it again before each connection, which
narrows, but cannot close, the window a DNS rebinding attack has.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from service.errors import UrlNotAllowed

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Well-known metadata endpoints, named in the refusal (they are link-local or shared anyway).
METADATA = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("100.100.100.200"),
}


@dataclass(frozen=True)
class CheckedUrl:
    url: str
    scheme: str
    host: str
    port: int | None
    addresses: tuple[Address, ...]


@dataclass(frozen=True)
class UrlPolicy:
    patterns: tuple[str, ...] = ()
    networks: tuple[Network, ...] = ()
    schemes: frozenset[str] = frozenset({"http", "https"})
    #: The setting to name in refusals.
    setting: str = "the allow-list"

    @classmethod
    def parse(
        cls, entries: Iterable[str], *, schemes: Iterable[str], setting: str = "the allow-list"
    ) -> UrlPolicy:
        """Split an allow-list into URL patterns and networks (ValueError for a bad entry)."""
        patterns, networks = [], []
        for entry in (e.strip() for e in entries):
            if not entry:
                continue
            if "://" in entry:
                patterns.append(_normalised(entry))
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(
                    f"{setting}: {entry!r} is neither a URL pattern (scheme://...) nor a network "
                    "(CIDR, e.g. 10.0.0.0/8)"
                ) from None
        return cls(tuple(patterns), tuple(networks), frozenset(s.lower() for s in schemes), setting)

    def check(self, url: str) -> CheckedUrl:
        """The URL parsed and resolved, or `UrlNotAllowed` saying which rule refused it."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as error:
            raise UrlNotAllowed(f"{url!r} is not a valid URL: {error}") from None
        scheme, host = parts.scheme.lower(), (parts.hostname or "")
        if scheme not in self.schemes:
            allowed = ", ".join(sorted(self.schemes))
            raise UrlNotAllowed(f"URL scheme {scheme or '(none)'!r} is not allowed ({allowed})")
        if not host:
            raise UrlNotAllowed(f"{redact(url)} names no host")
        if self.patterns and not any(
            fnmatch.fnmatchcase(_normalised(url), pattern) for pattern in self.patterns
        ):
            raise UrlNotAllowed(f"{redact(url)} matches no URL pattern of {self.setting}")
        addresses = resolve(host, port)
        for address in addresses:
            self._check_address(host, address)
        return CheckedUrl(url, scheme, host, port, addresses)

    def _check_address(self, host: str, address: Address) -> None:
        if any(address in network for network in self.networks):
            return
        if address.is_global and address not in METADATA:
            return
        kind = _kind(address)
        raise UrlNotAllowed(
            f"{host} resolves to {address}, a {kind} address; list its network in "
            f"{self.setting} to allow it"
        )


def resolve(host: str, port: int | None) -> tuple[Address, ...]:
    """Every address `host` resolves to (an IP literal is itself)."""
    try:
        return (ipaddress.ip_address(host.strip("[]")),)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise UrlNotAllowed(f"cannot resolve {host!r}: {error}") from None
    found = dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos)
    if not found:
        raise UrlNotAllowed(f"{host!r} resolves to no address")
    return tuple(found)


def redact(url: str) -> str:
    """The URL with any password replaced by '***' (for logs, errors and listings)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def _normalised(url: str) -> str:
    """Scheme and host in lower case, user info dropped: what patterns are matched against."""
    scheme, _, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    netloc = netloc.rpartition("@")[2].lower()
    return f"{scheme.lower()}://{netloc}{slash}{path}"


def _kind(address: Address) -> str:
    if address in METADATA:
        return "cloud metadata"
    for attribute in ("loopback", "link_local", "unspecified", "multicast", "private", "reserved"):
        if getattr(address, f"is_{attribute}"):
            return attribute.replace("_", "-")
    return "non-public"
