"""API keys: the key store (digests only, stable owners, rotation, revocation), the replicas'
authenticator (short cache, throttled last_used_at) and the `python -m serve_app.keys` command."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from serve_app.auth import Authenticator, TokenDigests, digest, key_owner_digest, owner_digest
from serve_app.jobs.keystore import QuotaExceeded, Quotas, check_overrides
from serve_app.jobs.store import JobStore
from serve_app.keys import database_url, jobs_args, main

REPO = Path(__file__).resolve().parents[3]
ADMIN = "an-admin-token-from-the-env-0123"


class Clock:
    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def store(tmp_path):
    s = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    yield s
    s.close()


def dump(store: JobStore) -> str:
    """Every value of every api_keys row, as text."""
    from sqlalchemy import select

    from serve_app.jobs.tables import api_keys

    with store.db.tx(write=False) as conn:
        return repr(conn.execute(select(api_keys)).all())


# -- the key store -------------------------------------------------------------------------


def test_a_key_s_secret_is_never_stored_only_its_digest(store):
    key, secret = store.keys.create("alice")
    assert secret.startswith("ssk_") and len(secret) >= 40
    rows = dump(store)
    assert secret not in rows and secret[4:] not in rows
    assert owner_digest(secret) in rows  # the SHA-256 is what lookups compare
    assert store.keys.lookup(owner_digest(secret)).id == key.id
    assert store.keys.lookup(owner_digest(secret + "x")) is None
    assert "digest" not in key.public() and secret not in json.dumps(key.public())


def test_a_key_s_owner_is_derived_from_its_id_and_survives_rotation(store):
    key, old = store.keys.create("alice")
    assert key.owner == key_owner_digest(key.id) != owner_digest(old)
    job, _ = store.create(key.owner, "lyrics", {"prompt": "lofi"})
    rotated, new = store.keys.rotate(key.id)
    assert new != old and rotated.owner == key.owner and rotated.rotated_at is not None
    assert store.keys.lookup(owner_digest(old)) is None  # the old secret is gone
    assert store.keys.lookup(owner_digest(new)).owner == key.owner
    assert [j.id for j in store.list(rotated.owner)[0]] == [job.id]  # same songs


def test_key_owners_never_collide_with_an_environment_token_s_owner():
    # Environment variables cannot hold NUL; the key owner's preimage starts with one.
    assert key_owner_digest("key_0123") != owner_digest("key_0123")
    assert key_owner_digest("key_0123") != owner_digest("songsmith-api-key" + "key_0123")
    assert key_owner_digest("key_a") != key_owner_digest("key_b")


def test_revoke_is_final_and_rotate_cannot_revive(store):
    key, _ = store.keys.create("alice")
    first = store.keys.revoke(key.id).revoked_at
    assert first is not None and store.keys.revoke(key.id).revoked_at == first
    with pytest.raises(ValueError, match="revoked"):
        store.keys.rotate(key.id)
    with pytest.raises(LookupError):
        store.keys.revoke("key_missing")


def test_quota_overrides_are_validated():
    assert check_overrides({"songs_per_day": 5, "audio_minutes_per_day": 2, "active_songs": -1}) == {
        "songs_per_day": 5, "audio_minutes_per_day": 2.0, "active_songs": -1}
    for bad in ({"nope": 1}, {"songs_per_day": -2}, {"songs_per_day": 1.5}, {"active_songs": True},
                {"active_songs": "3"}):
        with pytest.raises(ValueError):
            check_overrides(bad)
    defaults = Quotas(active_songs=3, songs_per_day=10, audio_minutes_per_day=5.0)
    assert defaults.with_overrides({"songs_per_day": -1, "active_songs": 7}) == Quotas(7, None, 5.0)


def test_revoking_through_the_job_store_cancels_the_key_s_songs(store):
    key, _ = store.keys.create("alice")
    running = store.create(key.owner, "lyrics", {"n": 1})[0]
    queued = store.create(key.owner, "lyrics", {"n": 2})[0]
    other = store.create(owner_digest(ADMIN), "lyrics", {"n": 3})[0]
    assert store.claim("w1").id == running.id
    assert store.claim("w1").id == other.id  # fair: the admin's first song runs before alice's second
    _, cancelled = store.revoke_key(key.id)
    assert cancelled == 2
    assert store.get(queued.id).status == "cancelled"
    assert store.get(running.id).cancel_requested  # the worker stops it at its next step
    assert store.get(other.id).status == "running" and not store.get(other.id).cancel_requested


def test_a_revoked_key_cannot_submit_even_inside_a_replica_s_cache(store):
    from serve_app.jobs.keystore import KeyRevoked

    key, _ = store.keys.create("alice")
    store.keys.revoke(key.id)
    with pytest.raises(KeyRevoked):
        store.create(key.owner, "lyrics", {"n": 1})


# -- the authenticator ---------------------------------------------------------------------


def test_admin_tokens_keep_their_owner_and_keys_get_theirs(store):
    auth = Authenticator(TokenDigests((digest(ADMIN),)), store.keys)
    admin = auth.resolve_sync(ADMIN)
    assert admin.admin and admin.owner == owner_digest(ADMIN)  # existing jobs keep their owner
    key, secret = store.keys.create("alice")
    caller = auth.resolve_sync(secret)
    assert not caller.admin and caller.owner == key.owner and caller.key_id == key.id and caller.name == "alice"
    assert auth.resolve_sync("not-a-key-and-not-an-admin-token") is None
    assert auth.resolve_sync("ssk_" + "x" * 43) is None
    assert auth.resolve_sync(None) is None and auth.resolve_sync("") is None


def test_a_revoked_key_is_refused_once_the_cache_ttl_has_passed(store):
    clock = Clock()
    auth = Authenticator(None, store.keys, ttl_s=3.0, clock=clock)
    key, secret = store.keys.create("alice")
    assert auth.resolve_sync(secret) is not None
    store.keys.revoke(key.id)
    clock.t += 2.9
    assert auth.resolve_sync(secret) is not None  # still cached: at most ttl_s
    clock.t += 0.2
    assert auth.resolve_sync(secret) is None


def test_the_cache_ttl_cannot_be_set_above_five_seconds(store):
    with pytest.raises(ValueError):
        Authenticator(None, store.keys, ttl_s=30)
    from pydantic import ValidationError

    from serve_app.args import KeysArgs

    with pytest.raises(ValidationError):
        KeysArgs(cache_ttl_s=6)


def test_last_used_at_is_written_at_most_once_a_minute_per_key(store, monkeypatch):
    clock = Clock()
    auth = Authenticator(None, store.keys, ttl_s=1.0, touch_interval_s=60.0, clock=clock)
    key, secret = store.keys.create("alice")
    writes = []
    real_touch = store.keys.touch
    monkeypatch.setattr(store.keys, "touch", lambda *a, **kw: writes.append(a) or real_touch(*a, **kw))
    for _ in range(50):
        assert auth.resolve_sync(secret) is not None
        clock.t += 0.5  # 25 s of steady use, the cache expiring every other request
    assert len(writes) == 1 and store.keys.get(key.id).last_used_at is not None
    clock.t += 60
    auth.resolve_sync(secret)
    assert len(writes) == 2


def test_the_store_side_touch_is_conditional_across_replicas(store):
    key, _ = store.keys.create("alice")
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    assert store.keys.touch(key.id, now=t0)
    assert not store.keys.touch(key.id, now=t0 + timedelta(seconds=30))  # another replica, too soon
    assert store.keys.touch(key.id, now=t0 + timedelta(seconds=61))


# -- the command ---------------------------------------------------------------------------


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_create_list_rotate_quota_revoke(tmp_path):
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    code, out, _ = run_cli("--database-url", url, "--json", "create", "--name", "alice",
                           "--quota", "songs_per_day=5", "--quota", "active_songs=unlimited")
    assert code == 0
    created = json.loads(out)
    secret, key_id = created["secret"], created["id"]
    assert created["quota_overrides"] == {"songs_per_day": 5, "active_songs": -1}

    code, out, _ = run_cli("--database-url", url, "list")
    assert code == 0 and key_id in out and "active" in out and secret not in out

    code, out, _ = run_cli("--database-url", url, "--json", "rotate", key_id)
    assert code == 0 and json.loads(out)["secret"] not in (secret, None)

    code, out, _ = run_cli("--database-url", url, "quota", key_id, "songs_per_day=default", "audio_minutes_per_day=12.5")
    assert code == 0 and "audio_minutes_per_day=12.5" in out and "songs_per_day" not in out

    code, out, _ = run_cli("--database-url", url, "revoke", key_id)
    assert code == 0 and "Revoked" in out
    code, out, _ = run_cli("--database-url", url, "--json", "list", "--active")
    assert json.loads(out) == []
    code, _, err = run_cli("--database-url", url, "revoke", "key_nope")
    assert code == 1 and "no API key" in err


def test_cli_finds_the_database_as_the_ingress_does(tmp_path, monkeypatch):
    jobs = jobs_args(None)
    monkeypatch.setenv(jobs.database_url_env, "sqlite:////from/the/env.db")
    assert database_url(None, jobs) == "sqlite:////from/the/env.db"
    assert database_url("sqlite:////explicit.db", jobs) == "sqlite:////explicit.db"
    monkeypatch.delenv(jobs.database_url_env)
    monkeypatch.chdir(tmp_path)
    assert database_url(None, jobs) == f"sqlite:///{tmp_path / 'var' / 'jobs.db'}"  # the dev default
    config = tmp_path / "serve.yaml"
    config.write_text("applications:\n  - args:\n      jobs:\n        sqlite_path: data/songs.db\n"
                      "        database_url_env: MY_DB\n")
    assert database_url(None, jobs_args(str(config))) == f"sqlite:///{tmp_path / 'data' / 'songs.db'}"
    monkeypatch.setenv("MY_DB", "postgresql+psycopg://db/jobs")
    assert database_url(None, jobs_args(str(config))) == "postgresql+psycopg://db/jobs"


def test_cli_runs_as_a_module(tmp_path):
    env_url = f"sqlite:///{tmp_path / 'jobs.db'}"
    r = subprocess.run([sys.executable, "-m", "serve_app.keys", "create", "--name", "bob"], cwd=REPO,
                       env={"JOBS_DATABASE_URL": env_url, "PATH": "/usr/bin:/bin"}, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    secret = next(w for w in r.stdout.split() if w.startswith("ssk_"))
    s = JobStore(env_url)
    try:
        assert s.keys.lookup(owner_digest(secret)).name == "bob"
    finally:
        s.close()


def test_quota_exceeded_names_the_quota_and_when_it_resets():
    e = QuotaExceeded("songs_per_day", 50, 3600)
    assert str(e) == "quota songs_per_day (50) reached; resets in 3600 s" and e.retry_after_s == 3600
    assert str(QuotaExceeded("active_songs", 3, 0.2)).endswith("retry in 1 s")
