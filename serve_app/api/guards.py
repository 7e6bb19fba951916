"""Request guards that run before any route: body size (413) and a per-token rate limit (429).

Both are plain ASGI middleware so an oversized or over-quota request is refused before FastAPI
reads or parses its body.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from serve_app.api import errors
from serve_app.auth import bearer_from_header, digest

EXEMPT_PATHS = ("/health", "/files/", "/docs", "/openapi.json", "/redoc")


UPLOAD_PATH = "/v1/uploads"  # audio files: their own, larger limit


class BodySizeLimit:
    """413 for bodies over `max_bytes` (`upload_max_bytes` for POST /v1/uploads), by Content-Length
    up front or by counting a streamed body."""

    def __init__(self, app, max_bytes: int, upload_max_bytes: int | None = None):
        self.app, self.max_bytes = app, max_bytes
        self.upload_max_bytes = upload_max_bytes or max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.upload_max_bytes if scope.get("path", "").rstrip("/") == UPLOAD_PATH else self.max_bytes
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        too_big = errors.BodyTooLarge(limit)
        if declared is not None:
            try:
                if int(declared) > limit:
                    return await errors.send(send, too_big)
            except ValueError:
                return await errors.send(send, errors.BadContentLength())
        seen = 0
        started = refused = False

        async def guarded_send(message):
            nonlocal started
            if refused:
                return  # the 413 went out; whatever the app makes of the aborted body is dropped
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        async def counting_receive():
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # Answer here: frameworks catch errors raised while reading the body (FastAPI
                    # turns them into "400 error parsing the body"), so raising alone is not enough.
                    if not started and not refused:
                        refused = True
                        await errors.send(send, too_big)
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            if not started and not refused:
                refused = True
                await errors.send(send, too_big)


class _TooLarge(Exception):
    pass


@dataclass
class _Bucket:
    tokens: float
    updated: float = field(default_factory=time.monotonic)


class TokenBucketLimit:
    """Per bearer token (keyed by its digest): `burst` at once, refilled at `rate_per_s`.

    Buckets live in each ingress replica, so the effective limit scales with the replica count;
    unauthenticated requests are left to the auth check (401), not counted here. Given `tokens`,
    only configured tokens get a bucket: a flood of made-up tokens can neither grow the table nor
    force the clear that would hand every real token a fresh burst.
    """

    def __init__(self, app, rate_per_s: float, burst: int, max_keys: int = 100_000, tokens=None):
        self.app, self.rate, self.burst, self.max_keys = app, rate_per_s, burst, max_keys
        self.tokens = tokens  # TokenDigests, or None to count every presented bearer token
        self.buckets: dict[bytes, _Bucket] = {}

    def take(self, key: bytes, now: float | None = None) -> float:
        """0 when allowed, else the seconds until a request would be."""
        now = time.monotonic() if now is None else now
        b = self.buckets.get(key)
        if b is None:
            if len(self.buckets) >= self.max_keys:
                self.buckets.clear()  # bounded memory under a flood of distinct tokens
            b = self.buckets[key] = _Bucket(tokens=float(self.burst), updated=now)
        b.tokens = min(self.burst, b.tokens + (now - b.updated) * self.rate)
        b.updated = now
        if b.tokens >= 1:
            b.tokens -= 1
            return 0.0
        return (1 - b.tokens) / self.rate

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path", "").startswith(EXEMPT_PATHS):
            return await self.app(scope, receive, send)
        token = bearer_from_header(dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1"))
        if token and (self.tokens is None or self.tokens.verify(token)):
            wait = self.take(digest(token))
            if wait > 0:
                return await errors.send(send, errors.RateLimited(max(1, math.ceil(wait))))
        await self.app(scope, receive, send)


def install_guards(api, *, max_body_bytes: int, rate_limit, tokens=None, upload_max_bytes: int | None = None) -> None:
    """Outermost first: the size check, then the rate limit, then FastAPI."""
    if rate_limit is not None and rate_limit.enabled:
        api.add_middleware(TokenBucketLimit, rate_per_s=rate_limit.requests_per_minute / 60.0,
                           burst=rate_limit.burst, tokens=tokens)
    api.add_middleware(BodySizeLimit, max_bytes=max_body_bytes, upload_max_bytes=upload_max_bytes)
