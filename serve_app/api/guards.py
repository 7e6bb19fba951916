"""Request guards that run before any route: body size (413), one Authorization header (400)
and a per-caller rate limit (429).

All are plain ASGI middleware so an oversized, ambiguous or over-rate request is refused before
FastAPI reads or parses its body. The rate limit is shared by every ingress replica when the app
has a job store (`SharedRateLimit`: counts in the job database); `TokenBucketLimit` is the
per-process fallback for apps without one.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field

from serve_app.api import errors
from serve_app.auth import bearer_from_header, digest
from serve_app.jobs.errors import StoreUnavailable

EXEMPT_PATHS = ("/health", "/files/", "/docs", "/openapi.json", "/redoc")


UPLOAD_PATH = "/v1/uploads"  # audio files: their own, larger limit


def route_path(scope) -> str:
    """The path the app's routes see: behind a route prefix (Serve's `route_prefix`, a proxy's
    root_path) `scope["path"]` still starts with the prefix, which the checks here must not see,
    or `/songs/health` would be rate limited and `/songs/v1/uploads` held to the JSON body limit."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    if root and (path == root or path.startswith(root.rstrip("/") + "/")):
        return path[len(root.rstrip("/")):] or "/"
    return path


class BodySizeLimit:
    """413 for bodies over `max_bytes` (`upload_max_bytes` for POST /v1/uploads), by Content-Length
    up front or by counting a streamed body."""

    def __init__(self, app, max_bytes: int, upload_max_bytes: int | None = None):
        self.app, self.max_bytes = app, max_bytes
        self.upload_max_bytes = upload_max_bytes or max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.upload_max_bytes if route_path(scope).rstrip("/") == UPLOAD_PATH else self.max_bytes
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


def authorization_values(scope) -> list[bytes]:
    """Every Authorization header of the request, in order (ASGI keeps duplicates)."""
    return [v for k, v in scope.get("headers") or () if k == b"authorization"]


def bearer_token(scope) -> str | None:
    """The bearer token as the routes read it (Starlette's `headers.get`: the first header)."""
    values = authorization_values(scope)
    return bearer_from_header(values[0].decode("latin-1")) if values else None


async def _send_400(send, message: str) -> None:
    data = json.dumps(errors.body(message)).encode()
    await send({"type": "http.response.start", "status": 400,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


class OneAuthorization:
    """400 for a request with more than one Authorization header: a proxy, the rate limit and the
    route could each read a different one (the limit was bypassed by sending a junk one first)."""

    MESSAGE = "send one Authorization header, not several"

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and len(authorization_values(scope)) > 1:
            return await _send_400(send, self.MESSAGE)
        await self.app(scope, receive, send)


@dataclass
class _Bucket:
    tokens: float
    updated: float = field(default_factory=time.monotonic)


class TokenBucketLimit:
    """Per bearer token (keyed by its digest): `burst` at once, refilled at `rate_per_s`.

    The fallback for apps without a job store: buckets live in this process, so N such processes
    allow N times the rate (the ingress uses `SharedRateLimit`);
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

    def wait(self, key: bytes, now: float | None = None) -> float:
        """Like `take` without spending: 0 while `key` has a request left, else the seconds until it will."""
        b = self.buckets.get(key)
        if b is None:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens = min(self.burst, b.tokens + (now - b.updated) * self.rate)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or route_path(scope).startswith(EXEMPT_PATHS):
            return await self.app(scope, receive, send)
        token = bearer_token(scope)
        if token and (self.tokens is None or self.tokens.verify(token)):
            wait = self.take(digest(token))
            if wait > 0:
                return await errors.send(send, errors.RateLimited(max(1, math.ceil(wait))))
        await self.app(scope, receive, send)


def client_address(scope) -> bytes:
    """The peer's address (Serve's proxy passes the real client's), as a bucket key."""
    client = scope.get("client") or ("", 0)
    return digest(f"client:{client[0]}")


class SharedRateLimit:
    """Per caller (admin token or API key, keyed by its owner digest) across every replica: the
    GCRA state lives in the job database (`SharedRateLimits`), one conditional UPDATE a request.

    Only callers the authenticator knows are counted (unknown tokens are the route's 401, and
    cannot create rows). A made-up API key (`ssk_...`) costs a database lookup, so those are
    limited per client address in this replica (`failed`: a token bucket charged one per key
    looked up and refused): past it, that address gets 429 before its next unknown key reaches
    the database, while tokens this replica knows keep working. Other bad tokens are checked in
    memory and stay the plain 401. A job store that cannot be reached answers 503, as the
    routes would."""

    def __init__(self, app, rate_per_s: float, burst: int, auth, limits,
                 failed_per_s: float = 0.5, failed_burst: int = 20):
        self.app, self.rate, self.burst, self.auth, self.limits = app, rate_per_s, burst, auth, limits
        self.failed = TokenBucketLimit(app=None, rate_per_s=failed_per_s, burst=failed_burst)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or route_path(scope).startswith(EXEMPT_PATHS):
            return await self.app(scope, receive, send)
        token = bearer_token(scope)
        if token:
            lookup = not self.auth.cached(token)[0]  # an API key this replica has not seen lately
            if lookup and (wait := self.failed.wait(client_address(scope))) > 0:
                # This address sent too many unknown keys: none of its lookups reach the database now.
                return await errors.send(send, errors.RateLimited(max(1, math.ceil(wait))))
            try:
                caller = await self.auth.resolve(token)
                if caller is None and lookup:
                    self.failed.take(client_address(scope))
                wait = 0.0 if caller is None else await asyncio.to_thread(
                    self.limits.take, caller.owner, self.rate, self.burst)
            except StoreUnavailable as exc:
                return await errors.send(send, exc)
            if wait > 0:
                return await errors.send(send, errors.RateLimited(max(1, math.ceil(wait))))
        await self.app(scope, receive, send)


def install_guards(api, *, max_body_bytes: int, rate_limit, tokens=None, upload_max_bytes: int | None = None,
                   auth=None, limits=None) -> None:
    """Outermost first: the size check, one Authorization header, the rate limit, then FastAPI.

    The rate limit is shared across replicas when there is an authenticator and a job store's
    `rates` (given, or found on `api.state.services`); otherwise it is this process's own."""
    svc = getattr(api.state, "services", None)
    auth = auth or getattr(svc, "auth", None)
    limits = limits or getattr(getattr(svc, "jobs", None), "rates", None)
    if rate_limit is not None and rate_limit.enabled:
        rate_per_s = rate_limit.requests_per_minute / 60.0
        if auth is not None and limits is not None:
            api.add_middleware(SharedRateLimit, rate_per_s=rate_per_s, burst=rate_limit.burst, auth=auth,
                               limits=limits, failed_per_s=rate_limit.failed_auth_per_minute / 60.0,
                               failed_burst=rate_limit.failed_auth_burst)
        else:
            api.add_middleware(TokenBucketLimit, rate_per_s=rate_per_s, burst=rate_limit.burst, tokens=tokens)
    api.add_middleware(OneAuthorization)
    api.add_middleware(BodySizeLimit, max_bytes=max_body_bytes, upload_max_bytes=upload_max_bytes)
