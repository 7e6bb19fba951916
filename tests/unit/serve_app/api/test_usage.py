"""Tenants over HTTP (the real app over fakes and an SQLite job store): API keys, quotas as 429s
naming the quota, GET /v1/usage, one Authorization header, and a rate limit shared by replicas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from serve_app.api import create_api
from serve_app.args import RateLimitArgs
from serve_app.jobs.keystore import Quotas
from serve_app.jobs.tables import rate_limits
from tests.support.fakes import fake_services
from tests.unit.serve_app.api.conftest import AUTH

BODY = {"full_described_song": "a calm song about rain", "audio_duration": 30}


class Monotonic:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class WallClock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


def client_for(stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_api(stack.services)),
                             base_url="http://songsmith.test")


@pytest.fixture
def ticks() -> Monotonic:
    return Monotonic()


@pytest.fixture
def stack_options(ticks):
    return {"auth_clock": ticks, "quotas": Quotas(active_songs=2, songs_per_day=3, audio_minutes_per_day=4)}


# -- keys ----------------------------------------------------------------------------------


async def test_a_key_makes_songs_under_its_own_owner_and_rotation_keeps_them(client, stack, ticks):
    key, old = stack.jobs.keys.create("alice")
    r = await client.post("/v1/songs", json=BODY, headers=bearer(old))
    assert r.status_code == 202, r.text
    song = r.json()["id"]
    assert stack.jobs.get(song).owner == key.owner
    assert (await client.get(f"/v1/songs/{song}", headers=AUTH)).status_code == 404  # admins see their own only
    _, new = stack.jobs.keys.rotate(key.id)
    ticks.t += 3.1  # past the key cache's TTL
    assert (await client.get("/v1/songs", headers=bearer(old))).status_code == 401
    listed = (await client.get("/v1/songs", headers=bearer(new))).json()["items"]
    assert [s["id"] for s in listed] == [song]


async def test_a_revoked_key_is_refused_within_the_cache_ttl(client, stack, ticks):
    key, secret = stack.jobs.keys.create("alice")
    assert (await client.post("/auth-status", headers=bearer(secret))).status_code == 200
    stack.jobs.keys.revoke(key.id)
    # Inside the TTL reads may still pass, but a new song is refused at once (checked at submit).
    r = await client.post("/v1/songs", json=BODY, headers=bearer(secret))
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    ticks.t += 3.01
    r = await client.post("/auth-status", headers=bearer(secret))
    assert r.status_code == 401 and r.json()["message"] == "missing or invalid bearer token"


async def test_environment_tokens_still_work_with_their_old_owner(client, stack):
    from serve_app.auth import owner_digest
    from tests.support.fakes import API_TOKEN

    r = await client.post("/v1/songs", json=BODY, headers=AUTH)
    assert r.status_code == 202 and stack.jobs.get(r.json()["id"]).owner == owner_digest(API_TOKEN)


# -- quotas and usage ----------------------------------------------------------------------


async def test_over_a_quota_is_a_429_naming_it_with_retry_after(client, stack):
    stack.models.gate("music:1")  # songs stay active until the test ends
    _, secret = stack.jobs.keys.create("alice")
    h = bearer(secret)
    assert [(await client.post("/v1/songs", json=BODY, headers=h)).status_code for _ in range(2)] == [202, 202]
    r = await client.post("/v1/songs", json=BODY, headers=h)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.json()["message"].startswith("quota active_songs (2) reached")
    # Admin tokens have no quotas.
    assert {(await client.post("/v1/songs", json=BODY, headers=AUTH)).status_code for _ in range(3)} == {202}


@pytest.mark.parametrize("stack_options", [{"quotas": Quotas(songs_per_day=50), "clock": WallClock()}])
async def test_songs_per_day_message_says_when_it_resets(client, stack):
    key, secret = stack.jobs.keys.create("alice", {"songs_per_day": 1})
    assert (await client.post("/v1/songs", json=BODY, headers=bearer(secret))).status_code == 202
    r = await client.post("/v1/songs", json=BODY, headers=bearer(secret))
    assert r.status_code == 429 and r.headers["retry-after"] == str(12 * 3600)
    assert r.json()["message"] == f"quota songs_per_day (1) reached; resets in {12 * 3600} s"


async def test_audio_minutes_count_duration_times_variations(client, stack):
    _, secret = stack.jobs.keys.create("alice", {"active_songs": 10})
    ok = await client.post("/v1/songs", json={**BODY, "audio_duration": 60, "variations": 3}, headers=bearer(secret))
    assert ok.status_code == 202  # 3 of 4 minutes
    r = await client.post("/v1/songs", json={**BODY, "audio_duration": 60, "variations": 2}, headers=bearer(secret))
    assert r.status_code == 429 and r.json()["message"].startswith("quota audio_minutes_per_day (4) reached")


async def test_usage_shows_the_caller_its_own_counters_and_limits(client, stack):
    stack.models.gate("music:1")
    key, secret = stack.jobs.keys.create("alice", {"songs_per_day": 7})
    await client.post("/v1/songs", json={**BODY, "variations": 2}, headers=bearer(secret))
    await client.post("/v1/songs", json=BODY, headers=AUTH)  # someone else's song is not counted
    u = (await client.get("/v1/usage", headers=bearer(secret))).json()
    assert u["caller"] == "api_key" and u["key_id"] == key.id and u["key_name"] == "alice"
    assert u["songs_per_day"] == {"used": 1, "limit": 7}  # the key's override
    assert u["active_songs"] == {"used": 1, "limit": 2}  # the default
    assert u["audio_minutes_per_day"] == {"used": 1.0, "limit": 4}
    assert u["queued"]["used"] + u["running"] == 1 and u["resets_in_s"] > 0
    admin = (await client.get("/v1/usage", headers=AUTH)).json()
    assert admin["caller"] == "admin" and admin["key_id"] is None and admin["songs_per_day"]["limit"] is None
    assert (await client.get("/v1/usage")).status_code == 401


# -- one Authorization header --------------------------------------------------------------


@pytest.mark.parametrize("stack_options", [{"rate_limit": RateLimitArgs(requests_per_minute=1, burst=1)}])
async def test_two_authorization_headers_are_a_400_and_cannot_dodge_the_rate_limit(client):
    """Before: the limiter read the last header and auth the first, so [valid, junk] was never
    counted. Now any request with two is refused before either reads one."""
    valid = AUTH["Authorization"]
    for headers in ([("Authorization", valid), ("Authorization", "Bearer junk-token-0123456789")],
                    [("Authorization", "Bearer junk-token-0123456789"), ("Authorization", valid)],
                    [("Authorization", valid), ("Authorization", valid)]):
        for _ in range(3):
            r = await client.post("/auth-status", headers=headers)
            assert r.status_code == 400, (headers, r.status_code)
            assert r.json()["message"] == "send one Authorization header, not several"
    assert (await client.post("/auth-status", headers=AUTH)).status_code == 200  # budget untouched
    assert (await client.post("/auth-status", headers=AUTH)).status_code == 429


async def test_two_authorization_headers_are_a_400_even_without_a_rate_limit(client):
    r = await client.get("/v1/usage", headers=[("Authorization", AUTH["Authorization"]),
                                               ("Authorization", "Bearer other")])
    assert r.status_code == 400


# -- a rate limit shared by every replica ----------------------------------------------------


async def test_two_replicas_on_one_database_share_one_rate_limit(tmp_path):
    clock = WallClock()
    limit = RateLimitArgs(requests_per_minute=60, burst=3)
    stacks = [fake_services(tmp_path / "jobs.db", rate_limit=limit, clock=clock) for _ in range(2)]
    _, secret = stacks[0].jobs.keys.create("alice")
    async with client_for(stacks[0]) as one, client_for(stacks[1]) as two:
        codes = []
        for c in (one, two, one, two, one):
            codes.append((await c.post("/auth-status", headers=AUTH)).status_code)
        assert codes == [200, 200, 200, 429, 429]  # 3 in all, not 3 each
        r = await two.post("/auth-status", headers=AUTH)
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        clock.now += timedelta(seconds=1)  # one more request's worth, for either replica
        assert (await two.post("/auth-status", headers=AUTH)).status_code == 200
        assert (await one.post("/auth-status", headers=AUTH)).status_code == 429
        # A key has its own budget, whichever replica it calls.
        assert [(await c.post("/auth-status", headers=bearer(secret))).status_code
                for c in (two, one, two, one)] == [200, 200, 200, 429]
        # Unknown tokens are the route's 401, never a row in the table.
        for i in range(5):
            assert (await one.post("/auth-status", headers=bearer(f"ssk_junk{i:040d}"))).status_code == 401
    with stacks[0].jobs.db.tx(write=False) as conn:
        assert conn.execute(select(func.count()).select_from(rate_limits)).scalar_one() == 2
    for s in stacks:
        s.jobs.close()


async def test_a_rotated_key_keeps_its_rate_budget(tmp_path):
    clock = WallClock()
    stack = fake_services(tmp_path / "jobs.db", rate_limit=RateLimitArgs(requests_per_minute=1, burst=1),
                          clock=clock, auth_clock=Monotonic())
    key, old = stack.jobs.keys.create("alice")
    async with client_for(stack) as c:
        assert (await c.post("/auth-status", headers=bearer(old))).status_code == 200
        _, new = stack.jobs.keys.rotate(key.id)
        assert (await c.post("/auth-status", headers=bearer(new))).status_code == 429  # same owner, same budget
    stack.jobs.close()


async def test_the_shared_limit_refuses_before_the_body_is_read(tmp_path):
    """Over the rate, a POST is a 429 whatever its body: the guard answers before FastAPI reads it."""
    stack = fake_services(tmp_path / "jobs.db", rate_limit=RateLimitArgs(requests_per_minute=1, burst=1),
                          clock=WallClock())
    read = []

    async def body():
        read.append(True)
        yield b"{not json"

    async with client_for(stack) as c:
        assert (await c.post("/auth-status", headers=AUTH)).status_code == 200
        r = await c.post("/v1/songs", content=body(), headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == 429 and r.json()["message"].startswith("rate limit exceeded")
    assert read == []  # httpx streams the body only when the app asks for it
    stack.jobs.close()
