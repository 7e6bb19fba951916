"""Tenants against real databases (an SQLite file and a real PostgreSQL 15 server): quotas and the
queue share hold under concurrent submits from two stores, fair claims with concurrent claimers
(SKIP LOCKED on PostgreSQL), one rate limit for every replica, and keys across two app instances."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from serve_app.api import create_api
from serve_app.args import RateLimitArgs
from serve_app.auth import owner_digest
from serve_app.jobs import JobStore
from serve_app.jobs.keystore import QuotaExceeded, Quotas
from tests.support.fakes import API_TOKEN, fake_services
from tests.support.postgres import PostgresServer

ADMIN = owner_digest("an-admin-token-0123456789")
OTHER = owner_digest("another-admin-token-0123456789")


@pytest.fixture
def make_store(store_url: str) -> Iterator[Callable[..., JobStore]]:
    stores: list[JobStore] = []

    def _make(**kwargs: Any) -> JobStore:
        s = JobStore(store_url, **kwargs)
        stores.append(s)
        return s

    yield _make
    for s in stores:
        s.close()


def hammer(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run fn(0..n-1) on n threads released together; return results (exceptions included)."""
    barrier = threading.Barrier(n)
    out: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = fn(i)
        except Exception as exc:  # noqa: BLE001
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


def test_concurrent_submits_from_two_replicas_never_overshoot_a_quota(make_store) -> None:
    stores = [make_store(quotas=Quotas(active_songs=5, audio_minutes_per_day=1000)) for _ in range(2)]
    key, _ = stores[0].keys.create("alice")
    results = hammer(24, lambda i: stores[i % 2].create(key.owner, "lyrics", {"n": i}))
    assert sum(isinstance(r, tuple) for r in results) == 5
    assert all(isinstance(r, (tuple, QuotaExceeded)) for r in results), results
    assert stores[1].usage(key.owner)["active_songs"] == {"used": 5, "limit": 5}


def test_concurrent_submits_never_overshoot_the_audio_minutes(make_store) -> None:
    stores = [make_store(quotas=Quotas(audio_minutes_per_day=10)) for _ in range(2)]
    key, _ = stores[0].keys.create("alice")
    three_minutes = {"audio_duration": 60, "variations": 3}
    results = hammer(12, lambda i: stores[i % 2].create(key.owner, "lyrics", {**three_minutes, "n": i}))
    assert sum(isinstance(r, tuple) for r in results) == 3  # 9 of 10 minutes; a 4th would be 12
    assert {r.quota for r in results if isinstance(r, QuotaExceeded)} == {"audio_minutes_per_day"}


def test_one_owner_cannot_take_more_than_its_share_of_the_queue_concurrently(make_store) -> None:
    stores = [make_store(max_queued=20, max_queued_per_owner=4) for _ in range(2)]
    results = hammer(16, lambda i: stores[i % 2].create(ADMIN, "lyrics", {"n": i}))
    assert sum(isinstance(r, tuple) for r in results) == 4
    assert {r.quota for r in results if isinstance(r, QuotaExceeded)} == {"max_queued_per_owner"}
    assert stores[0].create(OTHER, "lyrics", {"n": 0})[1]  # room left for everyone else


def test_fair_claims_with_concurrent_claimers(make_store) -> None:
    """40 songs of A queued first, then 3 of B; 4 replicas claim concurrently until the queue is
    empty. Every job is claimed exactly once and B's songs come within the first claims, not after
    A's 40. (Nothing finishes here, so the running counts the rule reads only grow and the order
    does not depend on thread timing: A, B, A, B, A, B, then A's.)"""
    seed = make_store(max_queued=100)
    for i in range(40):
        seed.create(ADMIN, "lyrics", {"n": i})
    b_ids = {seed.create(OTHER, "lyrics", {"n": i})[0].id for i in range(3)}
    claims: list[tuple] = []
    lock = threading.Lock()
    replicas = [make_store(max_queued=100) for _ in range(4)]

    def work(i: int) -> int:
        store, done = replicas[i], 0
        while (job := store.claim(f"w{i}")) is not None:
            with lock:
                claims.append((job.started_at, job.id))
            done += 1
        return done

    results = hammer(4, work)
    assert all(isinstance(r, int) for r in results), results
    order = [job_id for _, job_id in sorted(claims)]  # by claim time (threads may append late)
    assert len(order) == 43 and len(set(order)) == 43  # never a job twice
    last_b = max(order.index(j) for j in b_ids)
    assert last_b < 12, last_b  # FIFO would put them at 40-42; one claimer alone at 5


def test_one_rate_limit_for_every_replica_under_concurrency(make_store) -> None:
    stores = [make_store() for _ in range(2)]
    waits = hammer(40, lambda i: stores[i % 2].rates.take("caller", rate_per_s=1 / 3600, burst=10))
    assert all(isinstance(w, float) for w in waits), waits
    assert sum(w == 0 for w in waits) == 10
    # About an hour until the next unit (PostgreSQL: a request whose clock read came a moment
    # before a luckier one's lock may be told a little less; never 0).
    assert max(waits) > 3000 and all(w > 0 for w in waits if w != 0)


async def test_two_apps_on_one_postgres_share_keys_limits_and_revocation(pg_server: PostgresServer, tmp_path) -> None:
    name = f"k_{secrets.token_hex(6)}"
    url = pg_server.create_database(name)

    class Ticks:
        t = 0.0

        def __call__(self) -> float:
            return self.t

    ticks = Ticks()
    stacks = [fake_services(tmp_path / f"unused{i}.db", database_url=url, auth_clock=ticks,
                            rate_limit=RateLimitArgs(requests_per_minute=1, burst=2)) for i in range(2)]
    try:
        key, secret = stacks[0].jobs.keys.create("alice")
        h = {"Authorization": f"Bearer {secret}"}
        clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=create_api(s.services)),
                                     base_url="http://songsmith.test") for s in stacks]
        one, two = clients
        assert (await one.post("/auth-status", headers=h)).status_code == 200
        assert (await two.post("/auth-status", headers=h)).status_code == 200
        assert (await one.post("/auth-status", headers=h)).status_code == 429  # 2 in all, across both
        admin = {"Authorization": f"Bearer {API_TOKEN}"}
        assert (await two.post("/auth-status", headers=admin)).status_code == 200  # its own budget
        stacks[1].jobs.revoke_key(key.id)
        ticks.t += 3.01  # the key cache's TTL
        for c in clients:
            assert (await c.get("/v1/usage", headers=h)).status_code == 401
        for c in clients:
            await c.aclose()
    finally:
        for s in stacks:
            s.jobs.close()
        pg_server.drop_database(name)
