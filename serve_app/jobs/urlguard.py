"""Keep webhooks off internal networks: refuse URLs that resolve to loopback, private or
link-local addresses (cloud metadata at 169.254.169.254 included) unless the config allows them."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit


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


async def check_webhook_url(url: str, *, allow_private: bool) -> None:
    """Raise PermissionError (refused destination) or ValueError (malformed) for a webhook URL."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)  # raises on a malformed port
    except ValueError as exc:
        raise ValueError(f"webhook_url is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("webhook_url must be an absolute http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("webhook_url must not carry credentials")
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise ValueError(f"webhook_url host {parts.hostname!r} does not resolve") from None
    for info in infos:
        if _blocked(ipaddress.ip_address(info[4][0])):
            raise PermissionError(
                f"webhook_url host {parts.hostname!r} resolves to a private, loopback or link-local address"
            )
