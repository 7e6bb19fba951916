"""Raw HTTP for the hostile-input tests: the request target goes out byte for byte."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit


def raw_request(base_url: str, method: str, target: str, headers: dict | None = None,
                body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """Send `target` byte for byte (no client-side normalisation of `..` or percent-escapes)."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()
