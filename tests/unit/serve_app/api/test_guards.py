"""The guards in front of the routes answer in the same error shape as the routes."""

from __future__ import annotations

import httpx
import pytest

from serve_app.api import create_api
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


@pytest.fixture
async def prefixed(stack):
    """The app behind a route prefix, as Serve's `route_prefix` mounts it: scope["path"] keeps the
    prefix and scope["root_path"] names it."""
    transport = httpx.ASGITransport(app=create_api(stack.services), root_path="/songs")
    async with httpx.AsyncClient(transport=transport, base_url="http://songsmith.test") as c:
        yield c


async def test_behind_a_route_prefix_health_stays_exempt_from_the_rate_limit(prefixed):
    codes = [(await prefixed.post("/songs/auth-status", headers=AUTH)).status_code for _ in range(3)]
    assert codes == [200, 200, 429]  # the limit still applies under the prefix
    # Before, the exemption compared "/songs/health" with "/health": health was rate limited (and,
    # with the job database down, a 503 error body instead of the health answer).
    for _ in range(3):
        r = await prefixed.get("/songs/health", headers=AUTH)
        assert r.status_code == 200 and r.json()["status"] == "ok"


async def test_behind_a_route_prefix_uploads_keep_their_own_body_limit(prefixed):
    body = b"\0" * (100 * 1024)  # over the 64 KiB JSON limit, under the upload limit
    r = await prefixed.post("/songs/v1/uploads", content=body, headers={**AUTH, "Content-Type": "audio/wav"})
    assert r.status_code != 413, r.text  # decoded (and refused as not audio), not cut off by size
    assert r.status_code == 422 and "audio" in r.json()["message"]
    r = await prefixed.post("/songs/v1/songs", content=b"{" + b" " * (70 * 1024) + b"}",
                            headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 413


@pytest.fixture
async def from_address(stack):
    """Clients of one app, each seen from the peer address it is made with."""
    app, clients = create_api(stack.services), []

    def make(host: str) -> httpx.AsyncClient:
        clients.append(httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(host, 40000)),
                                         base_url="http://songsmith.test"))
        return clients[-1]

    yield make
    for c in clients:
        await c.aclose()


async def test_made_up_keys_are_limited_per_address_before_they_reach_the_database(stack, from_address):
    import secrets

    lookups = []
    real_lookup = stack.services.auth.keys.lookup
    stack.services.auth.keys.lookup = lambda d: lookups.append(d) or real_lookup(d)
    attacker, neighbour = from_address("203.0.113.7"), from_address("198.51.100.2")

    def made_up():
        return {"Authorization": f"Bearer ssk_{secrets.token_urlsafe(32)}"}

    codes = [(await attacker.get("/v1/songs", headers=made_up())).status_code for _ in range(25)]
    assert codes == [401] * 20 + [429] * 5  # failed_auth_burst 20 (the default)
    assert len(lookups) == 20  # the refused ones cost no lookup
    r = await attacker.get("/v1/songs", headers=made_up())
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert (await attacker.get("/v1/songs", headers=AUTH)).status_code == 200  # a known token still works
    assert (await neighbour.get("/v1/songs", headers=made_up())).status_code == 401  # other addresses unaffected
    # A bad token that is no API key costs no lookup: the same 401 as ever, limit or not.
    assert (await attacker.get("/v1/songs", headers={"Authorization": "Bearer not-a-key"})).status_code == 401
