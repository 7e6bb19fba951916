"""The guards in front of the routes answer in the same error shape as the routes."""

from __future__ import annotations

import pytest

from serve_app.args import RateLimitArgs
from tests.unit.serve_app.api.conftest import AUTH


@pytest.fixture
def stack_options():
    return {"rate_limit": RateLimitArgs(requests_per_minute=60, burst=2)}


async def test_a_body_over_the_limit_is_a_413_before_it_is_parsed(client):
    r = await client.post("/v1/songs", content=b"{" + b" " * (70 * 1024) + b"}", headers={
        **AUTH, "Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json() == {"detail": "request body exceeds 65536 bytes", "message": "request body exceeds 65536 bytes"}


async def test_a_token_over_its_rate_is_a_429_with_retry_after(client):
    codes = [(await client.post("/auth-status", headers=AUTH)).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    r = await client.post("/auth-status", headers=AUTH)
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert r.json()["message"] == "rate limit exceeded; retry in 1 s"
    assert (await client.get("/health")).status_code == 200  # exempt


async def test_the_router_s_own_errors_have_the_same_shape(client):
    r = await client.get("/no-such-route", headers=AUTH)
    assert r.status_code == 404 and r.json() == {"detail": "Not Found", "message": "Not Found"}
    r = await client.put("/v1/songs", headers=AUTH)
    assert r.status_code == 405 and r.json()["message"] == "Method Not Allowed"
