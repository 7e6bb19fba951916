"""Fairness and quotas in the job store (SQLite file): claims take owners in turn, one owner's
share of the queue is bounded, and API keys' quotas are checked atomically at submit."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from serve_app.auth import owner_digest
from serve_app.jobs import QueueFull
from serve_app.jobs.keystore import QuotaExceeded, Quotas
from serve_app.jobs.store import JobStore, requested_audio_s

A, B, C = (owner_digest(f"{n}-token-0123456789") for n in "abc")


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_store(tmp_path, clock):
    stores = []

    def _make(**kw) -> JobStore:
        kw.setdefault("clock", clock)
        s = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}", **kw)
        stores.append(s)
        return s

    yield _make
    for s in stores:
        s.close()


def bulk_queue(store: JobStore, owner: str, n: int) -> None:
    """`n` queued jobs for `owner` in one transaction (as create writes them, minus the events)."""
    import uuid

    from sqlalchemy import insert

    from serve_app.jobs.tables import jobs

    now = store.db.now()
    rows = [dict(id=uuid.uuid4().hex, owner=owner, mode="lyrics", request={"n": i}, request_hash="0" * 64,
                 status="queued", attempts=0, cancel_requested=False, event_seq=0, created_at=now,
                 updated_at=now, audio_s=180.0) for i in range(n)]
    with store.db.tx() as conn:
        conn.execute(insert(jobs), rows)


def owners_of(store: JobStore, jobs) -> list[str]:
    return ["ABC"[(A, B, C).index(j.owner)] for j in jobs]


# -- fair claims ---------------------------------------------------------------------------


def test_one_owner_s_500_queued_songs_do_not_hold_back_another_owner_s_first(make_store, clock):
    store = make_store(max_queued=1000)
    bulk_queue(store, A, 500)
    b_first = store.create(B, "lyrics", {"n": 0})[0]
    assert store.queue_position(b_first.id) == 1  # the round-robin estimate
    first = store.claim("w1")
    clock.advance(1)
    second = store.claim("w1")
    # FIFO would run B's song 501st; fair claims run it right after A's current song.
    assert owners_of(store, [first, second]) == ["A", "B"] and second.id == b_first.id


def test_with_one_worker_owners_take_turns_by_least_recently_served(make_store, clock):
    store = make_store(max_queued=1000)
    for i in range(6):
        store.create(A, "lyrics", {"n": i})
    for i in range(2):
        store.create(B, "lyrics", {"n": i})
    store.create(C, "lyrics", {"n": 0})
    order = []
    while (job := store.claim("w1")) is not None:
        order.append(job)
        clock.advance(1)
        assert store.finish(job.id, "w1", status="succeeded", result={"ok": True})
    assert "".join(owners_of(store, order)) == "ABCABAAAA"
    # Within an owner, still first in, first out.
    a_jobs = [j for j in order if j.owner == A]
    assert [j.request["n"] for j in a_jobs] == list(range(6))


def test_the_owner_with_fewer_running_songs_goes_first(make_store, clock):
    store = make_store(max_queued=1000)
    for i in range(10):
        store.create(A, "lyrics", {"n": i})
    running = [store.claim(f"w{i}") for i in range(3)]  # only A is waiting: A runs 3
    assert owners_of(store, running) == ["A", "A", "A"]
    store.create(B, "lyrics", {"n": 0})
    store.create(B, "lyrics", {"n": 1})
    clock.advance(1)
    # B runs none, so B's songs go next (while B runs fewer than A's 3) though A's 7 waited longer.
    assert owners_of(store, [store.claim("w3"), store.claim("w4")]) == ["B", "B"]
    assert owners_of(store, [store.claim("w5")]) == ["A"]


def test_queue_position_is_the_round_robin_estimate(make_store):
    store = make_store(max_queued=1000)
    a = [store.create(A, "lyrics", {"n": i})[0] for i in range(5)]
    b = [store.create(B, "lyrics", {"n": i})[0] for i in range(2)]
    assert [store.queue_position(j.id) for j in a] == [1, 3, 5, 6, 7]
    assert [store.queue_position(j.id) for j in b] == [1, 3]


# -- one owner's share of the queue ----------------------------------------------------------


def test_one_owner_cannot_fill_the_whole_queue(make_store):
    store = make_store(max_queued=8, max_queued_per_owner=2)
    store.create(A, "lyrics", {"n": 0})
    store.create(A, "lyrics", {"n": 1})
    with pytest.raises(QuotaExceeded) as info:
        store.create(A, "lyrics", {"n": 2})
    assert info.value.quota == "max_queued_per_owner" and info.value.retry_after_s >= 1
    assert str(info.value).startswith("quota max_queued_per_owner (2) reached")
    for owner in (B, C):  # everyone else still has room
        assert store.create(owner, "lyrics", {"n": 0})[1]
    store.claim("w1")  # one of A's leaves the queue -> A may queue one more
    assert store.create(A, "lyrics", {"n": 3})[1]


def test_the_default_share_is_a_quarter_of_the_queue():
    from serve_app.args import JobsArgs

    assert JobsArgs(max_queued=100).queue_share() == 25
    assert JobsArgs(max_queued=10).queue_share() == 3
    assert JobsArgs(max_queued=1).queue_share() == 1
    assert JobsArgs(max_queued=100, max_queued_per_owner=60).queue_share() == 60
    assert JobsArgs(max_queued=10, max_queued_per_owner=60).queue_share() == 10


def test_the_global_bound_still_holds(make_store):
    store = make_store(max_queued=3, max_queued_per_owner=2)
    store.create(A, "lyrics", {"n": 0})
    store.create(A, "lyrics", {"n": 1})
    store.create(B, "lyrics", {"n": 0})
    with pytest.raises(QueueFull):
        store.create(C, "lyrics", {"n": 0})


# -- API keys' quotas ----------------------------------------------------------------------


def test_audio_cost_is_duration_times_takes():
    assert requested_audio_s("description", {"audio_duration": 60, "variations": 3}) == 180
    assert requested_audio_s("lyrics", {}) == 180  # the API's default length
    assert requested_audio_s("extend", {"source": {"duration_s": 30.0}, "extend_s": 20, "variations": 2}) == 100
    assert requested_audio_s("cover", {"source": {"duration_s": 42.5}}) == 42.5
    assert requested_audio_s("lyrics", {"audio_duration": "junk", "variations": "x"}) == 180


def test_active_songs_quota(make_store):
    store = make_store(quotas=Quotas(active_songs=2))
    key, _ = store.keys.create("alice")
    first = store.create(key.owner, "lyrics", {"n": 0})[0]
    store.create(key.owner, "lyrics", {"n": 1})
    with pytest.raises(QuotaExceeded) as info:
        store.create(key.owner, "lyrics", {"n": 2})
    assert info.value.quota == "active_songs" and str(info.value).startswith("quota active_songs (2) reached")
    running = store.claim("w1")
    assert running.id == first.id
    with pytest.raises(QuotaExceeded):  # running counts too
        store.create(key.owner, "lyrics", {"n": 2})
    store.finish(running.id, "w1", status="succeeded", result={})
    again, created = store.create(key.owner, "lyrics", {"n": 2}, idempotency_key="k")
    assert created
    with pytest.raises(QuotaExceeded):
        store.create(key.owner, "lyrics", {"n": 3})
    # An idempotent replay is not a new song: answered even at the limit.
    assert store.create(key.owner, "lyrics", {"n": 2}, idempotency_key="k") == (again, False)


def test_songs_per_day_resets_at_utc_midnight(make_store, clock):
    store = make_store(quotas=Quotas(songs_per_day=2))
    key, _ = store.keys.create("alice")
    clock.now = datetime(2030, 1, 1, 23, 0, tzinfo=UTC)
    for i in range(2):
        store.create(key.owner, "lyrics", {"n": i})
    with pytest.raises(QuotaExceeded) as info:
        store.create(key.owner, "lyrics", {"n": 2})
    assert str(info.value) == "quota songs_per_day (2) reached; resets in 3600 s"
    assert info.value.retry_after_s == 3600
    clock.now = datetime(2030, 1, 2, 0, 0, 1, tzinfo=UTC)
    assert store.create(key.owner, "lyrics", {"n": 2})[1]


def test_audio_minutes_per_day_counts_duration_times_variations(make_store):
    store = make_store(quotas=Quotas(audio_minutes_per_day=10))
    key, _ = store.keys.create("alice")
    store.create(key.owner, "lyrics", {"audio_duration": 120, "variations": 4})  # 8 min
    with pytest.raises(QuotaExceeded) as info:
        store.create(key.owner, "lyrics", {"audio_duration": 60, "variations": 3})  # 3 more: 11 > 10
    assert info.value.quota == "audio_minutes_per_day"
    assert str(info.value).startswith("quota audio_minutes_per_day (10) reached: 8.0 min used today")
    assert store.create(key.owner, "lyrics", {"audio_duration": 60, "variations": 2})[1]  # exactly 10
    assert store.usage(key.owner)["audio_minutes_per_day"] == {"used": 10.0, "limit": 10}


def test_a_key_s_overrides_beat_the_defaults_and_admins_have_no_quotas(make_store):
    store = make_store(quotas=Quotas(active_songs=1, songs_per_day=1))
    big, _ = store.keys.create("big", {"active_songs": 3, "songs_per_day": -1})
    small, _ = store.keys.create("small")
    for i in range(3):
        store.create(big.owner, "lyrics", {"n": i})
    with pytest.raises(QuotaExceeded):
        store.create(big.owner, "lyrics", {"n": 3})
    store.create(small.owner, "lyrics", {"n": 0})
    with pytest.raises(QuotaExceeded):
        store.create(small.owner, "lyrics", {"n": 1})
    for i in range(5):  # an environment token: no key row, no quotas
        store.create(A, "lyrics", {"n": i})


def test_concurrent_submits_cannot_overshoot_a_quota(make_store):
    stores = [make_store(quotas=Quotas(active_songs=5)) for _ in range(2)]  # two "replicas"
    key, _ = stores[0].keys.create("alice")
    barrier = threading.Barrier(16)
    results: list[str] = []

    def submit(i: int) -> None:
        barrier.wait()
        try:
            stores[i % 2].create(key.owner, "lyrics", {"n": i})
            results.append("ok")
        except QuotaExceeded:
            results.append("429")

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results.count("ok") == 5 and results.count("429") == 11
    assert stores[0].usage(key.owner)["active_songs"] == {"used": 5, "limit": 5}
