"""Request guards: the token bucket (fake clock) and both ASGI guards over a tiny FastAPI app."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

from serve_app.args import RateLimitArgs
from serve_app.auth import digest
from serve_app.api.guards import BodySizeLimit, TokenBucketLimit, install_guards

KEY = digest("a-token-for-the-bucket-tests")


def bucket(rate_per_s: float = 1.0, burst: int = 3, **kw) -> TokenBucketLimit:
    return TokenBucketLimit(app=None, rate_per_s=rate_per_s, burst=burst, **kw)


def test_burst_then_refuse_with_the_wait():
    b = bucket(rate_per_s=2.0, burst=3)
    assert [b.take(KEY, now=100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take(KEY, now=100.0) == pytest.approx(0.5)  # one token every 0.5 s
    assert b.take(KEY, now=100.0) == pytest.approx(0.5)  # a refused request costs nothing


def test_refill_is_gradual_and_capped_at_burst():
    b = bucket(rate_per_s=1.0, burst=3)
    for _ in range(3):
        b.take(KEY, now=0.0)
    assert b.take(KEY, now=0.25) == pytest.approx(0.75)
    assert b.take(KEY, now=1.0) == 0.0  # one token back after 1 s
    assert b.take(KEY, now=1.0) == pytest.approx(1.0)
    # A long idle period refills to burst, never beyond.
    assert [b.take(KEY, now=1000.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take(KEY, now=1000.0) > 0


def test_buckets_are_per_token():
    b = bucket(rate_per_s=1.0, burst=1)
    assert b.take(KEY, now=0.0) == 0.0
    assert b.take(KEY, now=0.0) > 0
    assert b.take(digest("another-token-entirely"), now=0.0) == 0.0


def test_bucket_memory_is_bounded():
    b = bucket(burst=1, max_keys=10)
    for i in range(25):
        b.take(digest(f"token-{i}"), now=0.0)
    assert len(b.buckets) <= 10


# ---------------------------------------------------------------- ASGI level


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = ""


def tiny_app(*, max_body_bytes: int = 1024, rpm: float = 60.0, burst: int = 2, enabled: bool = True) -> FastAPI:
    api = FastAPI()
    install_guards(api, max_body_bytes=max_body_bytes,
                   rate_limit=RateLimitArgs(enabled=enabled, requests_per_minute=rpm, burst=burst))

    @api.post("/echo")
    async def echo(body: Body) -> dict:
        return {"len": len(body.text)}

    @api.get("/health")
    async def health() -> dict:
        return {"ok": True}

    @api.get("/ping")
    async def ping() -> dict:
        return {"pong": True}

    return api


def client_for(api: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://guards.test")


def auth(token: str = "token-one-0123456789") -> dict:
    return {"Authorization": f"Bearer {token}"}


async def test_over_the_rate_is_429_with_retry_after():
    async with client_for(tiny_app(rpm=60, burst=2)) as c:
        assert [(await c.get("/ping", headers=auth())).status_code for _ in range(2)] == [200, 200]
        r = await c.get("/ping", headers=auth())
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"  # 60/min: the next token in <= 1 s
        assert r.json()["detail"].startswith("rate limit exceeded") and r.json()["message"]
        # Another token has its own bucket; unauthenticated and exempt paths are not counted here.
        assert (await c.get("/ping", headers=auth("token-two-0123456789"))).status_code == 200
        assert (await c.get("/ping")).status_code == 200
        assert (await c.get("/health", headers=auth())).status_code == 200


async def test_retry_after_is_whole_seconds_rounded_up():
    async with client_for(tiny_app(rpm=1, burst=1)) as c:
        assert (await c.get("/ping", headers=auth())).status_code == 200
        r = await c.get("/ping", headers=auth())
        assert r.status_code == 429 and r.headers["retry-after"] == "60"


async def test_rate_limit_can_be_disabled():
    async with client_for(tiny_app(burst=1, enabled=False)) as c:
        assert {(await c.get("/ping", headers=auth())).status_code for _ in range(5)} == {200}


async def test_oversized_body_with_content_length_is_413():
    async with client_for(tiny_app(max_body_bytes=1024)) as c:
        r = await c.post("/echo", json={"text": "x" * 2000})
        assert r.status_code == 413
        assert r.json() == {"detail": "request body exceeds 1024 bytes", "message": "request body exceeds 1024 bytes"}
        assert (await c.post("/echo", json={"text": "x" * 100})).json() == {"len": 100}


async def test_oversized_chunked_body_is_413_not_400():
    """Without Content-Length the guard counts; FastAPI must not turn the abort into a 400."""
    async def chunks():
        for _ in range(8):
            yield b"x" * 512

    async with client_for(tiny_app(max_body_bytes=1024)) as c:
        r = await c.post("/echo", content=chunks(), headers={"Content-Type": "application/json"})
        assert "content-length" not in r.request.headers
        assert r.status_code == 413, r.text
        assert r.json()["detail"] == "request body exceeds 1024 bytes"


async def test_small_chunked_body_passes():
    async def chunks():
        yield b'{"text": '
        yield b'"abc"}'

    async with client_for(tiny_app(max_body_bytes=1024)) as c:
        r = await c.post("/echo", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 200 and r.json() == {"len": 3}


@pytest.mark.parametrize("value", [b"abc", b"-1x", b"1e9"])
async def test_invalid_content_length_is_400(value):
    sent = []

    async def app(scope, receive, send):  # never reached
        raise AssertionError("the guard must answer first")

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    guard = BodySizeLimit(app, max_bytes=1024)
    await guard({"type": "http", "path": "/echo", "headers": [(b"content-length", value)]}, receive, send)
    assert sent[0]["status"] == 400


async def test_the_size_guard_answers_before_the_app_reads_anything():
    reached = []

    async def app(scope, receive, send):
        reached.append(True)

    sent = []

    async def send(message):
        sent.append(message)

    guard = BodySizeLimit(app, max_bytes=10)
    await guard({"type": "http", "path": "/echo", "headers": [(b"content-length", b"10485760")]}, None, send)
    assert not reached and sent[0]["status"] == 413


async def test_size_guard_runs_before_the_rate_limit():
    """An oversized request is refused without spending the caller's rate budget."""
    async with client_for(tiny_app(max_body_bytes=1024, burst=1)) as c:
        for _ in range(3):
            assert (await c.post("/echo", json={"text": "x" * 5000}, headers=auth())).status_code == 413
        assert (await c.post("/echo", json={"text": "ok"}, headers=auth())).status_code == 200


async def test_made_up_tokens_cannot_reset_a_real_tokens_bucket():
    """Only configured tokens get buckets: flooding distinct junk tokens (each a 401 anyway) never
    fills the table, so it is never cleared and the real token stays limited."""
    from serve_app.auth import TokenDigests

    real = "the-real-token-0123456789"
    api = FastAPI()

    @api.get("/ping")
    async def ping() -> dict:
        return {"pong": True}

    guarded = TokenBucketLimit(api, rate_per_s=1 / 60, burst=1, max_keys=5, tokens=TokenDigests((digest(real),)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded), base_url="http://guards.test") as c:
        assert (await c.get("/ping", headers=auth(real))).status_code == 200
        assert (await c.get("/ping", headers=auth(real))).status_code == 429
        for i in range(50):
            await c.get("/ping", headers=auth(f"junk-token-{i:04d}-xxxxxxxx"))
        assert len(guarded.buckets) == 1
        assert (await c.get("/ping", headers=auth(real))).status_code == 429
