"""Keep webhooks off internal networks: refuse URLs that resolve to loopback, private or
link-local addresses (cloud metadata at 169.254.169.254 included) unless the config allows them.

The URL is read with the HTTP client's own parser (httpx), so the host checked is the host the
request goes to; anything two parsers could read differently is refused outright (whitespace and
control characters, which Python's urlsplit silently drops and httpx refuses; backslashes;
non-ASCII; userinfo). `check_webhook_url` returns a `WebhookTarget` holding the addresses it
checked, and the sender connects to one of those (`WebhookTarget.request`): a DNS answer that
changes between the check and the connection (rebinding) is never used.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

Resolver = Callable[[str, int], Awaitable[list[str]]]


class WebhookUnresolvable(ValueError):
    """The host does not resolve (now): refused at submit, retried at delivery (DNS may be back)."""


@dataclass(frozen=True)
class WebhookTarget:
    """A checked webhook URL: as the client parses it, and the addresses the check allowed
    (empty when it did not resolve them: `allow_private`)."""

    url: httpx.URL
    addresses: tuple[str, ...] = ()

    @property
    def host(self) -> str:
        return self.url.raw_host.decode("ascii")

    def request(self) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
        """(URL, extra headers, request extensions) of a request pinned to the first checked
        address: the URL names the address, `Host` (and for https the TLS server name, SNI and the
        certificate check) stay the original name's."""
        if not self.addresses:
            return self.url, {}, {}
        pinned = self.url.copy_with(host=self.addresses[0])
        extensions = {"sni_hostname": self.host} if self.url.scheme == "https" else {}
        return pinned, {"Host": self.url.netloc.decode("ascii")}, extensions


def _blocked(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:  # ::ffff:a.b.c.d is the IPv4 address itself
            return _blocked(ip.ipv4_mapped)
        # Other IPv6 forms that carry an IPv4 address: 6to4 (2002::/16) and Teredo.
        if any(v4 is not None and _blocked(v4) for v4 in (ip.sixtofour, *(ip.teredo or ()))):
            return True
    # `not is_global` also covers the shared address space 100.64.0.0/10 (carrier-grade NAT, and
    # cloud metadata such as Alibaba's 100.100.100.200), which `is_private` does not.
    return (not ip.is_global or ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
            or ip.is_reserved or ip.is_unspecified)


def parse_webhook_url(url: str) -> httpx.URL:
    """The URL as the HTTP client will send it; ValueError (naming webhook_url) for anything the
    client would refuse or read differently from what was written."""
    if not isinstance(url, str) or not url:
        raise ValueError("webhook_url must be an http(s) URL with a host")
    bad = next((c for c in url if not (c.isascii() and c.isprintable()) or c.isspace()), None)
    if bad is not None:
        raise ValueError(f"webhook_url must be printable ASCII without spaces (found {bad!r}; "
                         "percent-encode it, and give an international host in its xn-- form)")
    if "\\" in url:
        raise ValueError("webhook_url must not contain a backslash")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        raise ValueError("webhook_url must be an http(s) URL with a host")
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "@" in authority:
        raise ValueError("webhook_url must not carry credentials")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise ValueError(f"webhook_url is not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise ValueError("webhook_url must be an http(s) URL with a host")
    if parsed.userinfo:
        raise ValueError("webhook_url must not carry credentials")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise ValueError(f"webhook_url is not a valid URL: port {parsed.port} is out of range")
    return parsed


async def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


async def check_webhook_url(url: str, *, allow_private: bool, resolve: Resolver | None = None) -> WebhookTarget:
    """The checked target; raise PermissionError (refused destination), WebhookUnresolvable (the
    host does not resolve) or ValueError (malformed) for a webhook URL."""
    parsed = parse_webhook_url(url)
    if allow_private:
        return WebhookTarget(parsed)
    host = parsed.raw_host.decode("ascii")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        addresses = await (resolve or _getaddrinfo)(host, port)
    except (socket.gaierror, UnicodeError):
        addresses = []
    if not addresses:
        raise WebhookUnresolvable(f"webhook_url host {host!r} does not resolve") from None
    for address in addresses:
        if _blocked(ipaddress.ip_address(address)):
            raise PermissionError(
                f"webhook_url host {host!r} resolves to a private, loopback or link-local address"
            )
    return WebhookTarget(parsed, tuple(dict.fromkeys(addresses)))
