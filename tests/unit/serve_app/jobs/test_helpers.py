"""Pure helpers of the job store: hashing, cursors, backoff, timestamps, records, engine URLs."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from serve_app.jobs import InvalidCursor, Job, QueueFull, owner_digest, request_hash
from serve_app.jobs.db import make_engine
from serve_app.jobs.migrations import head_revision
from serve_app.jobs.util import (
    backoff_s,
    canonical_json,
    decode_cursor,
    encode_cursor,
    is_job_id,
    is_owner_digest,
    iso,
    scrub,
)

T0 = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def test_request_hash_is_canonical() -> None:
    a = request_hash("lyrics", {"b": 1, "a": [1, {"y": 2, "x": "ü"}]}, None)
    b = request_hash("lyrics", {"a": [1, {"x": "ü", "y": 2}], "b": 1}, None)
    assert a == b and len(a) == 64
    assert a != request_hash("description", {"b": 1, "a": [1, {"y": 2, "x": "ü"}]}, None)
    assert a != request_hash("lyrics", {"b": 1, "a": [1, {"y": 2, "x": "ü"}]}, "https://h/x")
    assert request_hash("lyrics", {"a": [1, 2]}, None) != request_hash("lyrics", {"a": [2, 1]}, None)
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'
    with pytest.raises(ValueError):
        request_hash("lyrics", {"x": float("nan")}, None)
    with pytest.raises(TypeError):
        request_hash("lyrics", {"x": object()}, None)


def test_owner_digest_and_id_checks() -> None:
    d = owner_digest("secret-token")
    assert is_owner_digest(d) and "secret-token" not in d
    assert not is_owner_digest("secret-token") and not is_owner_digest(d.upper())
    assert is_job_id("a" * 32) and not is_job_id("a" * 31) and not is_job_id(None)


@pytest.mark.parametrize("pk", [1, 7, 10**12, 2**63 - 1])
def test_cursor_roundtrip(pk: int) -> None:
    cur = encode_cursor(pk)
    assert "=" not in cur and str(pk) not in cur and decode_cursor(cur) == pk


@pytest.mark.parametrize("bad", ["", "!!!", "a" * 100, encode_cursor(5)[:-1] + "?",
                                 "ajEuLTE", "ajEuMA", "eDEuNQ", 5, None])
def test_cursor_rejects_garbage(bad) -> None:  # noqa: ANN001
    with pytest.raises(InvalidCursor):
        decode_cursor(bad)
    assert issubclass(InvalidCursor, ValueError)


def test_backoff_exponential_capped_and_jittered() -> None:
    delays = [backoff_s(n, base_s=10, max_s=100) for n in range(1, 7)]
    assert delays == [10, 20, 40, 80, 100, 100]
    assert backoff_s(0, base_s=10, max_s=100) == 10
    rng = random.Random(1)
    jittered = [backoff_s(3, base_s=10, max_s=100, jitter=0.1, rng=rng) for _ in range(200)]
    assert all(36 <= d <= 44 for d in jittered) and len(set(jittered)) > 100


def test_iso_and_scrub() -> None:
    assert iso(T0) == "2030-01-02T03:04:05.678Z"
    assert iso(T0.astimezone(timezone(timedelta(hours=5)))) == "2030-01-02T03:04:05.678Z"
    assert iso(T0.replace(tzinfo=None)) == "2030-01-02T03:04:05.678Z"  # naive = UTC
    assert iso(None) is None
    assert scrub("user:pw@host pw", "pw", None, "") == "user:***@host ***"


def test_queue_full_retry_after_at_least_one() -> None:
    assert QueueFull(0).retry_after_s == 1 and QueueFull(42).retry_after_s == 42


def test_job_public_hides_internals() -> None:
    job = Job(
        id="f" * 32, owner="0" * 64, mode="lyrics", request={"lyrics": "la"}, status="running",
        stage="composing", progress_step=3, progress_total=8, attempts=1, error=None,
        result=None, idempotency_key="k", request_hash="1" * 64, webhook_url=None,
        created_at=T0, started_at=T0, finished_at=None, updated_at=T0, lease_owner="w1",
        lease_expires_at=T0, cancel_requested=False, last_event_seq=4, pk=9,
    )
    pub = job.public()
    assert pub["progress"] == {"step": 3, "total": 8} and pub["started_at"].endswith("Z")
    for hidden in ("owner", "request_hash", "lease_owner", "lease_expires_at", "pk"):
        assert hidden not in pub
    assert "0" * 64 not in repr(pub) and "w1" not in repr(pub)
    assert not job.terminal


def test_engine_urls() -> None:
    with pytest.raises(ValueError, match="file"):
        make_engine("sqlite://")
    with pytest.raises(ValueError, match="file"):
        make_engine("sqlite:///:memory:")
    with pytest.raises(ValueError, match="psycopg"):
        make_engine("postgresql+psycopg2://u:p@h/db")
    with pytest.raises(ValueError, match="unsupported"):
        make_engine("mysql://u:p@h/db")
    engine = make_engine("postgresql://u:p@127.0.0.1:1/db")  # plain scheme -> psycopg 3
    assert engine.url.drivername == "postgresql+psycopg"
    engine.dispose()


def test_single_migration_head() -> None:
    assert head_revision() == "0003"
