"""Keep webhooks off internal networks: refuse URLs that resolve to loopback, private or
link-local addresses (cloud metadata at 169.254.169.254 included) unless the config allows them."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit


def _blocked(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified)


async def check_webhook_url(url: str, *, allow_private: bool) -> None:
    """Raise PermissionError (refused destination) or ValueError (malformed) for a webhook URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("webhook_url must be an absolute http(s) URL")
    if parts.username or parts.password:
        raise ValueError("webhook_url must not carry credentials")
    if allow_private:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise ValueError(f"webhook_url host {parts.hostname!r} does not resolve") from None
    for info in infos:
        if _blocked(ipaddress.ip_address(info[4][0])):
            raise PermissionError(
                f"webhook_url host {parts.hostname!r} resolves to a private, loopback or link-local address"
            )
