"""JobStore against real databases: an SQLite file and a real PostgreSQL 15 server.

Every test that takes ``store_url``/``make_store`` runs once per backend. PostgreSQL tests get
a fresh database each (``CREATE DATABASE``, ~0.1 s) on one server shared by the session (tests/integration/conftest.py); the
outage test starts its own server so stopping it disturbs nobody. Time-dependent behaviour
(leases, webhook backoff) runs on a fake clock shared by the stores of one test.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine

from serve_app.jobs import (
    IdempotencyConflict,
    InvalidCursor,
    JobStore,
    Lease,
    QueueFull,
    StoreUnavailable,
    owner_digest,
)
from serve_app.jobs.migrations import current_revision, head_revision, upgrade
from serve_app.jobs.tables import jobs
from tests.support.postgres import PostgresServer, require_postgres

ALICE = owner_digest("alice-token")
BOB = owner_digest("bob-token")
REQ = {"description": "a calm lo-fi song about rain", "duration_s": 30}



class FakeClock:
    """A settable UTC clock; thread-safe enough for tests (one float assignment)."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now = self.now + timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_store(store_url: str, clock: FakeClock) -> Iterator[Callable[..., JobStore]]:
    """Factory: ``make_store(**kw)`` opens another JobStore (another "replica") on the test's DB.
    Uses the fake clock unless ``clock=None`` is passed."""
    stores: list[JobStore] = []

    def _make(**kwargs: Any) -> JobStore:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("webhook_jitter", 0.0)
        s = JobStore(store_url, **kwargs)
        stores.append(s)
        return s

    yield _make
    for s in stores:
        s.close()


@pytest.fixture
def store(make_store) -> JobStore:
    return make_store()


def _types(store: JobStore, job_id: str) -> list[tuple[int, str, dict]]:
    return [(e.seq, e.type, e.data) for e in store.events(job_id)]


# -- create / get / list ----------------------------------------------------------------------


def test_create_get_and_public_view(store: JobStore) -> None:
    job, created = store.create(ALICE, "description", REQ, webhook_url="https://example.com/hook")
    assert created and job.status == "queued" and job.attempts == 0 and len(job.id) == 32
    assert job.owner == ALICE and job.created_at.tzinfo is not None and job.last_event_seq == 1

    assert store.get(job.id) == job
    assert store.get(job.id, owner=ALICE) == job
    assert store.get(job.id, owner=BOB) is None  # cross-owner looks like not found
    assert store.get("0" * 32) is None and store.get("not-an-id") is None

    pub = job.public()
    assert set(pub) == {
        "id", "status", "mode", "stage", "progress", "attempts", "cancel_requested", "error",
        "result", "request", "parent_id", "idempotency_key", "webhook_url", "created_at", "started_at",
        "finished_at", "updated_at", "last_event_seq",
    }
    assert pub["request"] == REQ and pub["progress"] is None and pub["created_at"].endswith("Z")
    assert ALICE not in str(pub) and "lease" not in str(pub)
    assert _types(store, job.id) == [(1, "status", {"status": "queued"})]

    with pytest.raises(ValueError, match="SHA-256"):
        store.create("alice-token", "description", REQ)  # a raw token is refused
    with pytest.raises(ValueError, match="mode"):
        store.create(ALICE, "opera", REQ)


def test_list_newest_first_with_keyset_pagination(store: JobStore) -> None:
    mine = [store.create(ALICE, "lyrics", {"n": i})[0].id for i in range(5)]
    store.create(BOB, "lyrics", {"n": 99})
    page1, cur1 = store.list(ALICE, limit=2)
    page2, cur2 = store.list(ALICE, limit=2, before=cur1)
    page3, cur3 = store.list(ALICE, limit=2, before=cur2)
    assert [j.id for j in page1 + page2 + page3] == mine[::-1]
    assert cur1 and cur2 and cur3 is None and len(page3) == 1
    assert store.list(ALICE, limit=5) == (store.list(ALICE, limit=10)[0], None)
    assert [j.request for j in store.list(BOB)[0]] == [{"n": 99}]
    assert store.list(owner_digest("nobody")) == ([], None)
    with pytest.raises(InvalidCursor):
        store.list(ALICE, before="bogus!")


# -- idempotency and the queue bound ------------------------------------------------------------


def test_idempotency_same_and_different_body(store: JobStore) -> None:
    a, created = store.create(ALICE, "description", REQ, idempotency_key="k1")
    b, created2 = store.create(ALICE, "description", dict(reversed(list(REQ.items()))),
                               idempotency_key="k1")  # key order does not matter
    assert created and not created2 and a.id == b.id
    with pytest.raises(IdempotencyConflict) as info:
        store.create(ALICE, "description", {**REQ, "duration_s": 31}, idempotency_key="k1")
    assert info.value.job_id == a.id
    with pytest.raises(IdempotencyConflict):
        store.create(ALICE, "description", REQ, idempotency_key="k1", webhook_url="https://x/y")
    c, created3 = store.create(BOB, "description", REQ, idempotency_key="k1")  # keys are per owner
    assert created3 and c.id != a.id
    assert store.counts()["queued"] == 2


@pytest.mark.parametrize("serialized", [True, False], ids=["locked", "integrity-fallback"])
def test_concurrent_creates_with_one_key_give_one_job(make_store, serialized: bool) -> None:
    store = make_store()
    store._pg_serialize_creates = serialized  # False on PG: exercise the IntegrityError path
    barrier = threading.Barrier(8)
    results: list[tuple[str, bool]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            job, created = store.create(ALICE, "lyrics", {"lyrics": "la"}, idempotency_key="race")
            results.append((job.id, created))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len({jid for jid, _ in results}) == 1 and len(results) == 8
    assert sum(created for _, created in results) == 1
    assert store.counts()["queued"] == 1


def test_queue_full(make_store) -> None:
    store = make_store(max_queued=3)
    jobs = [store.create(ALICE, "lyrics", {"n": i}, idempotency_key=f"q{i}")[0] for i in range(3)]
    with pytest.raises(QueueFull) as info:
        store.create(BOB, "lyrics", {"n": 3})
    assert info.value.retry_after_s >= 1
    # A retry of an accepted request still gets its job back while the queue is full.
    assert store.create(ALICE, "lyrics", {"n": 0}, idempotency_key="q0") == (jobs[0], False)
    assert store.claim("w1") is not None  # one leaves the queue -> room again
    assert store.create(BOB, "lyrics", {"n": 3})[1]
    with pytest.raises(QueueFull):
        store.create(BOB, "lyrics", {"n": 4})


# -- claims ---------------------------------------------------------------------------------


def test_claim_fifo_and_queue_position(store: JobStore, clock: FakeClock) -> None:
    ids = [store.create(ALICE, "description", {"n": i})[0].id for i in range(3)]
    assert [store.queue_position(i) for i in ids] == [1, 2, 3]
    job = store.claim("w1")
    assert job is not None and job.id == ids[0]
    assert job.status == "running" and job.attempts == 1 and job.lease_owner == "w1"
    assert job.started_at == clock.now and job.lease_expires_at == clock.now + timedelta(seconds=15)
    assert _types(store, job.id)[-1] == (2, "status", {"status": "running", "attempt": 1})
    assert [store.queue_position(i) for i in ids] == [None, 1, 2]
    assert store.claim("w2").id == ids[1] and store.claim("w1").id == ids[2]
    assert store.claim("w3") is None
    assert store.counts() == {"queued": 0, "running": 3, "succeeded": 0, "failed": 0, "cancelled": 0}


def _drain(store: JobStore, worker_id: str, out: list[str], hold_s: float = 0.0) -> None:
    while (job := store.claim(worker_id)) is not None:
        out.append(job.id)
        if hold_s:
            time.sleep(hold_s)


def test_concurrent_claimers_threads_never_share_a_job(make_store) -> None:
    replicas = [make_store(clock=None), make_store(clock=None)]
    ids = {replicas[0].create(ALICE, "lyrics", {"n": i})[0].id for i in range(50)}
    got: dict[str, list[str]] = {f"w{i}": [] for i in range(4)}
    threads = [threading.Thread(target=_drain, args=(replicas[i % 2], w, got[w]))
               for i, w in enumerate(got)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    claimed = [jid for lst in got.values() for jid in lst]
    assert len(claimed) == len(set(claimed)) == 50 and set(claimed) == ids
    assert all(j.attempts == 1 for j in replicas[0].list(ALICE, limit=100)[0])


def _claim_in_process(url: str, worker_id: str, ready, go, out) -> None:  # noqa: ANN001
    """Child process: its own JobStore (as a Ray replica would have), claims until empty."""
    store = JobStore(url, migrate=False)
    store.ping()
    ready.put(worker_id)
    go.wait(30)
    got: list[str] = []
    _drain(store, worker_id, got, hold_s=0.002)
    store.close()
    out.put((worker_id, got))


def test_concurrent_claimers_processes_never_share_a_job(store: JobStore, store_url: str) -> None:
    ids = {store.create(ALICE, "lyrics", {"n": i})[0].id for i in range(50)}
    ctx = multiprocessing.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_claim_in_process, args=(store_url, f"p{i}", ready, go, out))
             for i in range(2)]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            ready.get(timeout=60)
        go.set()
        results = dict(out.get(timeout=60) for _ in procs)
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    claimed = results["p0"] + results["p1"]
    assert len(claimed) == len(set(claimed)) == 50 and set(claimed) == ids
    assert results["p0"] and results["p1"], "both processes should have claimed some jobs"


def test_lease_expiry_resumes_on_another_worker(make_store, clock: FakeClock) -> None:
    a, b = make_store(lease_s=10), make_store(lease_s=10)
    job = a.create(ALICE, "description", REQ)[0]
    assert a.claim("wa").id == job.id
    assert a.set_stage(job.id, "wa", "writing")
    clock.advance(9)
    assert b.claim("wb") is None  # lease still valid
    assert a.renew(job.id, "wa")  # renewed at t=9 -> expires t=19
    clock.advance(9.5)
    assert b.claim("wb") is None
    clock.advance(1)  # t=19.5: worker A died without renewing
    resumed = b.claim("wb")
    assert resumed is not None and resumed.id == job.id
    assert resumed.attempts == 2 and resumed.lease_owner == "wb" and resumed.status == "running"
    assert _types(b, job.id)[-1][1:] == ("status", {"status": "running", "attempt": 2, "resumed": True})
    # The old worker has lost every right to write.
    assert not a.renew(job.id, "wa") and a.heartbeat(job.id, "wa") is Lease.LOST
    assert not a.set_stage(job.id, "wa", "composing")
    assert not a.set_progress(job.id, "wa", 1, 2)
    assert not a.finish(job.id, "wa", status="succeeded", result={"x": 1})
    assert not a.release(job.id, "wa")
    assert b.finish(job.id, "wb", status="succeeded", result={"audio": "s/1.mp3"})
    done = a.get(job.id)
    assert done.status == "succeeded" and done.result == {"audio": "s/1.mp3"}
    assert done.lease_owner is None and done.lease_expires_at is None
    assert done.finished_at == clock.now
    assert not b.finish(job.id, "wb", status="failed")  # terminal: no second finish


def _claim_and_write_forever(url: str, ready) -> None:  # noqa: ANN001
    """Child process: claim a job, then write progress non-stop until it is SIGKILLed."""
    store = JobStore(url, lease_s=1.0, migrate=False)
    job = store.claim("doomed")
    ready.put(job.id if job else None)
    step = 0
    while True:
        step += 1
        store.set_progress(job.id, "doomed", step, None)


def test_killed_worker_process_is_resumed_after_lease_expiry(store: JobStore, store_url: str) -> None:
    """Real clock, real process: SIGKILL a worker mid-write (possibly inside a transaction);
    the database is not wedged and another store resumes the job once the lease expires."""
    job = store.create(ALICE, "description", REQ)[0]
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    proc = ctx.Process(target=_claim_and_write_forever, args=(store_url, ready))
    proc.start()
    try:
        assert ready.get(timeout=60) == job.id
        survivor = JobStore(store_url, lease_s=1.0, migrate=False)
        deadline = time.monotonic() + 10
        while survivor.get(job.id).progress_step is None or survivor.get(job.id).progress_step < 20:
            assert time.monotonic() < deadline, "child never wrote progress"
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.join(10)
    killed_at = time.monotonic()
    try:
        resumed = None
        while resumed is None and time.monotonic() - killed_at < 5:
            resumed = survivor.claim("survivor")
            time.sleep(0.05)
        assert resumed is not None and resumed.id == job.id and resumed.attempts == 2
        assert 0.5 < time.monotonic() - killed_at < 3  # waited for the lease, no longer
        assert survivor.finish(job.id, "survivor", status="succeeded")
        events = survivor.events(job.id, limit=100000)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))  # gap-free
        assert events[-2].data == {"status": "running", "attempt": 2, "resumed": True}
    finally:
        survivor.close()


def test_repeatedly_abandoned_job_fails(make_store, clock: FakeClock) -> None:
    store = make_store(lease_s=5, max_attempts=2)
    job = store.create(ALICE, "lyrics", REQ, webhook_url="https://example.com/h")[0]
    assert store.claim("w1").attempts == 1
    clock.advance(6)
    assert store.claim("w2").attempts == 2
    clock.advance(6)
    ended: list[str] = []
    assert store.claim("w3", ended.append) is None  # attempts exhausted: failed instead of resumed
    assert ended == [job.id]  # its partial objects are the caller's to remove
    dead = store.get(job.id)
    assert dead.status == "failed" and "stopped responding" in dead.error
    assert [d.event for d in store.webhooks.deliveries(job.id)] == ["job.failed"]


def test_release_returns_job_to_the_front_of_the_queue(store: JobStore) -> None:
    first = store.create(ALICE, "lyrics", {"n": 1})[0]
    second = store.create(ALICE, "lyrics", {"n": 2})[0]
    assert store.claim("w1").id == first.id
    assert store.set_progress(first.id, "w1", 3, 10)
    assert not store.release(first.id, "w2")
    assert store.release(first.id, "w1")
    back = store.get(first.id)
    assert back.status == "queued" and back.lease_owner is None and back.attempts == 0
    assert back.progress_step is None and back.stage is None
    assert store.queue_position(first.id) == 1 and store.queue_position(second.id) == 2
    assert _types(store, first.id)[-1][1:] == ("status", {"status": "queued", "released": True})
    again = store.claim("w2")
    assert again.id == first.id and again.attempts == 1


def test_release_for_retry_counts_the_attempt(store: JobStore) -> None:
    job = store.create(ALICE, "lyrics", {"n": 1})[0]
    later = store.create(ALICE, "lyrics", {"n": 2})[0]
    assert store.claim("w1").attempts == 1
    assert store.set_stage(job.id, "w1", "composing")
    assert not store.release_for_retry(job.id, "w2", "CUDA OOM")  # not the holder
    assert store.release_for_retry(job.id, "w1", "CUDA OOM")
    back = store.get(job.id)
    assert back.status == "queued" and back.attempts == 1 and back.lease_owner is None
    assert back.stage is None and back.error is None
    assert store.queue_position(job.id) == 1 and store.queue_position(later.id) == 2
    assert _types(store, job.id)[-1][1:] == (
        "status", {"status": "queued", "retry": True, "error": "CUDA OOM"})
    again = store.claim("w2")
    assert again.id == job.id and again.attempts == 2
    store.request_cancel(job.id, ALICE)
    assert store.release_for_retry(job.id, "w2", "again")  # pending cancel wins
    assert store.get(job.id).status == "cancelled"


# -- cancel ---------------------------------------------------------------------------------


def test_cancel_queued_running_terminal(store: JobStore) -> None:
    hook = "https://example.com/hook"
    queued = store.create(ALICE, "lyrics", {"n": 1}, webhook_url=hook)[0]
    running = store.create(ALICE, "lyrics", {"n": 2}, webhook_url=hook)[0]
    assert store.claim("w1").id == queued.id
    assert store.release(queued.id, "w1")  # back to queued, then claim the other one
    store.request_cancel(queued.id, BOB)  # another owner: nothing happens
    assert store.get(queued.id).status == "queued"

    c1 = store.request_cancel(queued.id, ALICE)  # queued: cancelled at once
    assert c1.status == "cancelled" and c1.finished_at is not None and c1.cancel_requested
    assert _types(store, queued.id)[-1][1:] == ("status", {"status": "cancelled"})
    assert [d.event for d in store.webhooks.deliveries(queued.id)] == ["job.cancelled"]
    assert store.claim("w1").id == running.id  # the cancelled job is never claimed

    assert store.request_cancel(running.id, BOB) is None
    assert not store.is_cancel_requested(running.id)
    c2 = store.request_cancel(running.id, ALICE)  # running: flag only, the worker decides
    assert c2.status == "running" and c2.cancel_requested
    assert store.is_cancel_requested(running.id)
    assert store.heartbeat(running.id, "w1") is Lease.CANCEL_REQUESTED
    assert store.renew(running.id, "w1")
    assert _types(store, running.id)[-1][1:] == ("cancel_requested", {})
    seq = store.get(running.id).last_event_seq
    assert store.request_cancel(running.id, ALICE).last_event_seq == seq  # no duplicate event
    assert store.finish(running.id, "w1", status="cancelled")
    assert store.get(running.id).status == "cancelled"

    done = store.get(running.id)
    assert store.request_cancel(running.id, ALICE) == done  # terminal: unchanged
    assert len(store.webhooks.deliveries(running.id)) == 1


def test_cancel_requested_job_of_a_dead_worker_is_cancelled_not_resumed(
    make_store, clock: FakeClock
) -> None:
    store = make_store(lease_s=5)
    job = store.create(ALICE, "lyrics", REQ)[0]
    store.claim("w1")
    store.request_cancel(job.id, ALICE)
    clock.advance(6)
    ended: list[str] = []
    assert store.claim("w2", ended.append) is None
    assert store.get(job.id).status == "cancelled"
    assert store.queue_position(job.id) is None
    assert ended == [job.id]  # it had started: what it uploaded must go


def test_a_job_cancelled_before_it_ever_ran_has_nothing_to_remove(store: JobStore) -> None:
    job = store.create(ALICE, "lyrics", REQ)[0]
    with store.db.tx() as conn:  # a cancel that landed between the queue read and the claim
        conn.execute(jobs.update().where(jobs.c.id == job.id).values(cancel_requested=True))
    ended: list[str] = []
    assert store.claim("w1", ended.append) is None
    assert store.get(job.id).status == "cancelled" and ended == []


def test_release_with_pending_cancel_cancels(store: JobStore) -> None:
    job = store.create(ALICE, "lyrics", REQ)[0]
    store.claim("w1")
    store.request_cancel(job.id, ALICE)
    assert store.release(job.id, "w1")
    assert store.get(job.id).status == "cancelled"


# -- events ---------------------------------------------------------------------------------


def test_events_are_ordered_and_resumable(store: JobStore) -> None:
    job = store.create(ALICE, "described_lyrics", REQ)[0]
    store.claim("w1")
    assert store.set_stage(job.id, "w1", "writing")
    for step in range(1, 4):
        assert store.set_progress(job.id, "w1", step, 3)
    assert store.set_stage(job.id, "w1", "composing")
    mid = store.get(job.id)
    assert mid.stage == "composing" and mid.progress_step is None  # new stage resets progress
    assert store.set_progress(job.id, "w1", 1, None)
    assert store.finish(job.id, "w1", status="failed", error="GPU fell off the bus")
    events = store.events(job.id)
    assert [e.seq for e in events] == list(range(1, 10))
    assert [e.type for e in events] == ["status", "status", "stage", "progress", "progress",
                                        "progress", "stage", "progress", "status"]
    assert events[3].data == {"stage": "writing", "step": 1, "total": 3}
    assert events[7].data == {"stage": "composing", "step": 1, "total": None}
    assert events[-1].data == {"status": "failed", "error": "GPU fell off the bus"}
    assert store.get(job.id).last_event_seq == 9
    assert [e.seq for e in store.events(job.id, after_seq=6)] == [7, 8, 9]
    assert [e.seq for e in store.events(job.id, after_seq=2, limit=2)] == [3, 4]
    assert store.events(job.id, after_seq=9) == []
    assert events[0].public() == {"seq": 1, "type": "status", "data": {"status": "queued"},
                                  "created_at": events[0].public()["created_at"]}
    with pytest.raises(ValueError):
        store.set_stage(job.id, "w1", "mixing")


def test_succeeded_event_carries_the_result(store: JobStore) -> None:
    job = store.create(ALICE, "lyrics", REQ)[0]
    store.claim("w1")
    result = {"audio_url": "https://cdn/x.mp3", "cover_url": None, "title": "Rain"}
    assert store.finish(job.id, "w1", status="succeeded", result=result)
    assert store.events(job.id)[-1].data == {"status": "succeeded", "result": result}
    assert store.get(job.id).public()["result"] == result


# -- webhooks -------------------------------------------------------------------------------


def test_webhook_delivery_retries_with_backoff_then_gives_up(make_store, clock: FakeClock) -> None:
    store = make_store(webhook_max_attempts=3, webhook_backoff_base_s=10, webhook_backoff_max_s=15)
    job = store.create(ALICE, "lyrics", REQ, webhook_url="https://example.com/h")[0]
    store.claim("w1")
    assert store.webhooks.claim_due("s1") == []  # nothing until the job is terminal
    assert store.finish(job.id, "w1", status="succeeded", result={"ok": True})
    t0 = clock.now

    [d] = store.webhooks.claim_due("s1", lease_s=30)
    assert d.event == "job.succeeded" and d.url == "https://example.com/h" and d.attempts == 0
    assert d.payload["id"] == job.id and d.payload["status"] == "succeeded"
    assert "owner" not in d.payload
    assert store.webhooks.claim_due("s2") == []  # leased by s1

    d1 = store.webhooks.record_attempt(d.id, "s1", status_code=500, duration_ms=12)
    assert d1.status == "pending" and d1.attempts == 1 and d1.lease_owner is None
    assert d1.next_attempt_at == t0 + timedelta(seconds=10) and d1.last_status_code == 500
    assert store.webhooks.record_attempt(d.id, "s1", status_code=200) is None  # lease gone
    assert store.webhooks.claim_due("s2", now=t0 + timedelta(seconds=9)) == []
    [d] = store.webhooks.claim_due("s2", now=t0 + timedelta(seconds=10))
    d2 = store.webhooks.record_attempt(d.id, "s2", error="connect timeout",
                                      now=t0 + timedelta(seconds=11))
    assert d2.attempts == 2 and d2.next_attempt_at == t0 + timedelta(seconds=11 + 15)  # capped
    [d] = store.webhooks.claim_due("s1", now=t0 + timedelta(seconds=30))
    d3 = store.webhooks.record_attempt(d.id, "s1", status_code=503, now=t0 + timedelta(seconds=30))
    assert d3.status == "failed" and d3.attempts == 3 and d3.finished_at is not None
    assert store.webhooks.claim_due("s1", now=t0 + timedelta(days=1)) == []
    attempts = store.webhooks.attempts(d.id)
    assert [(a.attempt, a.status_code, a.error) for a in attempts] == [
        (1, 500, None), (2, None, "connect timeout"), (3, 503, None)]
    assert attempts[0].duration_ms == 12 and attempts[0].job_id == job.id


def test_webhook_success_give_up_and_dead_sender(make_store, clock: FakeClock) -> None:
    store = make_store()
    hooks = []
    for i in range(3):
        job = store.create(ALICE, "lyrics", {"n": i}, webhook_url=f"https://example.com/{i}")[0]
        store.claim("w")
        store.finish(job.id, "w", status="succeeded")
        hooks.append(job.id)
    batch = store.webhooks.claim_due("s1", lease_s=20, limit=2)
    assert [d.job_id for d in batch] == hooks[:2]
    ok = store.webhooks.record_attempt(batch[0].id, "s1", status_code=204)
    assert ok.status == "delivered" and ok.attempts == 1 and ok.finished_at == clock.now
    gone = store.webhooks.record_attempt(batch[1].id, "s1", status_code=410, give_up=True)
    assert gone.status == "failed"
    [third] = store.webhooks.claim_due("s1", lease_s=20)
    clock.advance(21)  # sender s1 died holding the third delivery
    [again] = store.webhooks.claim_due("s2", lease_s=20)
    assert again.id == third.id and again.lease_owner == "s2"
    assert store.webhooks.record_attempt(third.id, "s1", status_code=200) is None
    assert store.webhooks.record_attempt(third.id, "s2", status_code=200).status == "delivered"
    # Purge: terminal jobs with no pending delivery go, with their events and deliveries.
    clock.advance(10)
    live = store.create(ALICE, "lyrics", {"n": "live"})[0]
    assert store.purge(clock.now) == 3
    assert store.get(hooks[0]) is None and store.events(hooks[0]) == []
    assert store.webhooks.deliveries(hooks[0]) == [] and store.get(live.id) is not None


# -- owners, migrations, availability ------------------------------------------------------


def test_owner_isolation(store: JobStore) -> None:
    job = store.create(ALICE, "lyrics", REQ, idempotency_key="same")[0]
    other = store.create(BOB, "lyrics", REQ, idempotency_key="same")[0]
    assert other.id != job.id
    assert store.get(job.id, owner=BOB) is None and store.get(other.id, owner=ALICE) is None
    assert store.request_cancel(job.id, BOB) is None and store.get(job.id).status == "queued"
    assert [j.id for j in store.list(BOB)[0]] == [other.id]
    assert [j.id for j in store.list(ALICE)[0]] == [job.id]


def test_migrations_concurrent_first_start_and_idempotent(store_url: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)
    stores: list[JobStore] = []

    def open_store() -> None:
        try:
            barrier.wait()
            stores.append(JobStore(store_url))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not errors, errors
        assert upgrade(store_url) == head_revision()  # again: a no-op
        engine = create_engine(store_url)
        try:
            assert current_revision(engine) == head_revision()
            from alembic.autogenerate import compare_metadata
            from alembic.runtime.migration import MigrationContext

            from serve_app.jobs.migrations import VERSION_TABLE
            from serve_app.jobs.tables import metadata

            with engine.connect() as conn:
                ctx = MigrationContext.configure(
                    conn, opts={"version_table": VERSION_TABLE, "compare_type": True})
                diff = compare_metadata(ctx, metadata)
            assert diff == [], f"models.py and the migrations disagree: {diff}"
        finally:
            engine.dispose()
    finally:
        for s in stores:
            s.close()


def test_sqlite_file_location(tmp_path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'new-dir' / 'jobs.db'}")  # parent dir created
    store.ping()
    store.close()
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(StoreUnavailable, match="unable to open"):
        JobStore(f"sqlite:///{tmp_path / 'a-file' / 'jobs.db'}")
    with pytest.raises(ValueError, match="file"):
        JobStore("sqlite://")


def test_postgres_outage_and_recovery() -> None:
    """A private server (the shared one keeps running): stop it, expect StoreUnavailable with
    no password in it, start it again, and the same store recovers with its data intact."""
    require_postgres()
    with PostgresServer() as pg:
        store = JobStore(pg.url, connect_timeout_s=2)
        try:
            job = store.create(ALICE, "lyrics", REQ)[0]
            assert store.claim("w1").id == job.id
            pg.stop()
            calls = [store.ping, lambda: store.get(job.id), lambda: store.claim("w2"),
                     lambda: store.create(ALICE, "lyrics", {"n": 2}),
                     lambda: store.renew(job.id, "w1"), lambda: store.events(job.id)]
            for call in calls:
                with pytest.raises(StoreUnavailable) as info:
                    call()
                msg = str(info.value)
                assert pg.password not in msg and "***" in msg and str(pg.port) in msg
            with pytest.raises(StoreUnavailable):
                JobStore(pg.url, connect_timeout_s=2)  # start-up while the DB is down
            pg.start()
            store.ping()
            assert store.get(job.id).status == "running"
            assert store.renew(job.id, "w1")
            assert store.finish(job.id, "w1", status="succeeded")
            assert store.create(ALICE, "lyrics", {"n": 2})[1]
        finally:
            store.close()


def test_postgres_wrong_password_is_store_unavailable(pg_server: PostgresServer) -> None:
    url = pg_server.url.replace(pg_server.password, "wrong-secret-pw")
    with pytest.raises(StoreUnavailable) as info:
        JobStore(url)
    assert "wrong-secret-pw" not in str(info.value) and "password" in str(info.value)


def test_a_new_sqlite_file_waits_for_the_lock_it_needs_to_switch_to_wal(tmp_path) -> None:
    """Several replicas opening a new database at once: switching it to WAL needs an exclusive
    lock SQLite does not wait for. The engine waits (within its busy timeout) instead of failing."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from serve_app.jobs.db import make_engine

    path = tmp_path / "jobs.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE other (x)")  # a rollback-journal database, as SQLite creates it
    holder.execute("BEGIN IMMEDIATE")  # another replica writing (its own switch, or a migration)
    release = threading.Timer(0.5, holder.rollback)
    release.start()
    t0 = time.monotonic()
    engine = make_engine(f"sqlite:///{path}", busy_timeout_s=5)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert time.monotonic() - t0 >= 0.4  # it waited for the holder, then switched
    finally:
        release.join()
        engine.dispose()
        holder.close()

    stuck = sqlite3.connect(tmp_path / "stuck.db", isolation_level=None)
    stuck.execute("CREATE TABLE other (x)")
    stuck.execute("BEGIN IMMEDIATE")
    engine = make_engine(f"sqlite:///{tmp_path / 'stuck.db'}", busy_timeout_s=0.3)
    try:
        t0 = time.monotonic()
        with pytest.raises(OperationalError, match="locked"):
            engine.connect()
        assert 0.2 <= time.monotonic() - t0 < 3  # gave up at the busy timeout, not at once or never
    finally:
        engine.dispose()
        stuck.close()
