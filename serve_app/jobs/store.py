"""Durable job store: songs as asynchronous jobs, their event log, and webhook deliveries.

Backends: an SQLite file (``sqlite:///var/jobs.db``, the embedded default; several processes
may share it) or PostgreSQL via psycopg 3 (``postgresql+psycopg://...``). See ``db.py``.

Concurrency model
- Every public method is synchronous, thread-safe and runs one short transaction on a pooled
  connection (nothing is held between calls); call it through ``asyncio.to_thread``.
- Claims are atomic across threads *and* processes: on PostgreSQL the candidate row is taken
  with ``SELECT ... FOR UPDATE SKIP LOCKED``; on SQLite every write transaction is
  ``BEGIN IMMEDIATE``, so writers are serialized by the database file lock.
- A claimed job carries a lease (``lease_owner``/``lease_expires_at``). The worker renews it
  (``heartbeat``/``renew``, and implicitly with every ``set_stage``/``set_progress``); when a
  lease expires another worker's ``claim`` resumes the job (``attempts`` + 1, a ``status``
  event with ``resumed: true``) and every later write by the old worker returns False/LOST.
- Each status/stage/progress change and its event are written in the same transaction; event
  ``seq`` comes from ``jobs.event_seq`` incremented under the row lock, so it is gap-free.
- Claims are fair across owners: the next job is the oldest queued one of the owner with the
  fewest running jobs, ties going to the owner served least recently (see ``claim``); one
  owner may hold at most ``max_queued_per_owner`` of the ``max_queued`` queue slots.
- API keys' quotas (``keystore.Quotas``) are checked in ``create``'s transaction, under the same
  lock as the queue bound, so concurrent submits cannot overshoot them.
- Leases compare against the *application* clock of the calling process (``clock``), so the
  hosts sharing a database need synchronized clocks (NTP; skew << ``lease_s``).

Errors: ``StoreUnavailable`` for any connection/availability failure (message has the URL
with the password hidden), ``IdempotencyConflict``, ``QueueFull``, ``QuotaExceeded`` and
``KeyRevoked`` (``keystore.py``), ``InvalidCursor``, ``ValueError`` for bad arguments.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import exc as sa_exc

from serve_app.vocabulary import JOB_STAGES, JOB_STATUSES, SONG_MODES, TERMINAL_STATUSES

from .db import Database
from .errors import IdempotencyConflict, QueueFull
from .keystore import NO_QUOTAS, ApiKey, KeyRevoked, KeyStore, Quotas, QuotaExceeded, SharedRateLimits
from .migrations import upgrade
from .records import Event, Job, Lease
from .tables import UTCDateTime, api_keys, job_events, jobs, webhook_attempts, webhook_deliveries
from .util import (
    as_utc,
    canonical_json,
    decode_cursor,
    encode_cursor,
    is_job_id,
    is_owner_digest,
    request_hash,
    truncate_text,
)
from .webhook_store import WebhookStore

log = logging.getLogger(__name__)

_CREATE_LOCK_KEY = 0x736F6E67736D6372  # pg_advisory_xact_lock key serializing create()
_ACTIVE = ("queued", "running")
_DEFAULT_SONG_S = 180.0  # SongOptions.audio_duration's default


def requested_audio_s(mode: str, request: dict[str, Any]) -> float:
    """Seconds of audio a request asks for: its length x its takes (an edit: the source's length,
    plus what an extend adds). What the audio_minutes_per_day quota counts, at submit."""
    takes = request.get("variations", 1)
    takes = takes if isinstance(takes, int) and not isinstance(takes, bool) and takes > 0 else 1
    src = request.get("source")
    try:
        if isinstance(src, dict) and "duration_s" in src:
            seconds = float(src["duration_s"]) + (float(request.get("extend_s") or 0.0) if mode == "extend" else 0.0)
        else:
            seconds = float(request.get("audio_duration", _DEFAULT_SONG_S))
    except (TypeError, ValueError):
        seconds = _DEFAULT_SONG_S
    if not math.isfinite(seconds) or seconds < 0:
        seconds = _DEFAULT_SONG_S
    return seconds * takes


def _day_start(now: datetime) -> datetime:
    return datetime.combine(now.date(), time(0), tzinfo=now.tzinfo)


def _ts(value: datetime) -> Any:
    """A bound datetime parameter with the store's UTC type (for expressions like coalesce)."""
    return literal(value, UTCDateTime())


class JobStore:
    """Durable queue + state of song jobs and their events; `webhooks` holds their deliveries."""

    def __init__(
        self,
        url: str,
        *,
        lease_s: float = 15.0,
        max_queued: int = 100,
        max_queued_per_owner: int | None = None,
        quotas: Quotas | None = None,
        max_attempts: int = 3,
        webhook_max_attempts: int = 8,
        webhook_backoff_base_s: float = 10.0,
        webhook_backoff_max_s: float = 3600.0,
        webhook_jitter: float = 0.1,
        default_job_duration_s: float = 60.0,
        busy_timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        pool_size: int = 5,
        migrate: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """Open the store (creating/migrating the schema unless ``migrate=False``).

        ``max_queued_per_owner``: one owner's share of the queue (None: the whole queue).
        ``quotas``: the defaults API keys are held to (None: unlimited); admin owners (no key) have
        none. A key's own overrides apply on top.
        """
        if lease_s <= 0:
            raise ValueError("lease_s must be > 0")
        if max_queued < 1 or max_attempts < 1:
            raise ValueError("max_queued and max_attempts must be >= 1")  # WebhookStore checks its own
        if max_queued_per_owner is not None and max_queued_per_owner < 1:
            raise ValueError("max_queued_per_owner must be >= 1 (or None)")
        self.lease_s = float(lease_s)
        self.max_queued = int(max_queued)
        self.max_queued_per_owner = None if max_queued_per_owner is None else min(int(max_queued_per_owner),
                                                                                  self.max_queued)
        self.quotas = quotas or NO_QUOTAS
        self.max_attempts = int(max_attempts)
        self.default_job_duration_s = float(default_job_duration_s)
        self.db = Database(url, busy_timeout_s=busy_timeout_s, connect_timeout_s=connect_timeout_s,
                           pool_size=pool_size, clock=clock)
        self.url, self.backend = self.db.url, self.db.backend
        self.webhooks = WebhookStore(self.db, max_attempts=webhook_max_attempts,
                                     backoff_base_s=webhook_backoff_base_s, backoff_max_s=webhook_backoff_max_s,
                                     jitter=webhook_jitter)
        self.keys = KeyStore(self.db)
        self.rates = SharedRateLimits(self.db)
        # create() takes an advisory lock on PostgreSQL: exact queue bound, no key races.
        # (Tests turn it off to exercise the IntegrityError fallback.)
        self._pg_serialize_creates = True
        if migrate:
            with self.db.guard():
                upgrade(self.db.engine)

    def __repr__(self) -> str:
        return f"JobStore({self.url!r})"

    # -- plumbing ------------------------------------------------------------------------------

    def _lease_until(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.lease_s)

    @staticmethod
    def _append_event(conn: Connection, job_id: str, seq: int, type_: str, data: dict[str, Any],
                      now: datetime) -> None:
        conn.execute(insert(job_events).values(job_id=job_id, seq=seq, type=type_, data=data,
                                               created_at=now))

    def _holder(self, job_id: str, worker_id: str) -> Any:
        return and_(jobs.c.id == job_id, jobs.c.lease_owner == worker_id,
                    jobs.c.status == "running")

    def _terminal(self, conn: Connection, where: Any, status: str, now: datetime, *,
                  result: Any = None, error: str | None = None,
                  extra: dict[str, Any] | None = None) -> Job | None:
        """Make the job matching ``where`` terminal: clear lease, event, webhook delivery."""
        values: dict[str, Any] = {
            "status": status, "finished_at": now, "updated_at": now, "lease_owner": None,
            "lease_expires_at": None, "event_seq": jobs.c.event_seq + 1,
        }
        if result is not None:
            values["result"] = result
        if error is not None:
            values["error"] = truncate_text(error)
        if status == "cancelled":
            values["cancel_requested"] = True
        row = conn.execute(update(jobs).where(where).values(**values).returning(*jobs.c)
                           ).mappings().first()
        if row is None:
            return None
        job = Job.from_row(row)
        data: dict[str, Any] = {"status": status}
        if job.error is not None:
            data["error"] = job.error
        if job.result is not None:
            data["result"] = job.result
        data.update(extra or {})
        self._append_event(conn, job.id, job.last_event_seq, "status", data, now)
        if job.webhook_url:
            self.webhooks.enqueue(conn, job, now)
        return job

    # -- health --------------------------------------------------------------------------------

    def ping(self) -> None:
        """Round-trip to the database; raise ``StoreUnavailable`` if it is unreachable."""
        with self.db.tx(write=False) as conn:
            conn.execute(text("SELECT 1"))

    def close(self) -> None:
        """Close pooled connections (also call in a forked child before using the store)."""
        self.db.close()

    def counts(self) -> dict[str, int]:
        """Number of jobs per status (every status present, 0 when none)."""
        with self.db.tx(write=False) as conn:
            rows = conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status)).all()
        out = dict.fromkeys(JOB_STATUSES, 0)
        out.update({status: int(n) for status, n in rows})
        return out

    # -- creating and reading ----------------------------------------------------------------

    def create(self, owner: str, mode: str, request: dict[str, Any], *,
               idempotency_key: str | None = None,
               webhook_url: str | None = None, parent_id: str | None = None) -> tuple[Job, bool]:
        """Queue a job; return (job, created). Idempotent per owner+key; may raise QueueFull."""
        if not is_owner_digest(owner):
            raise ValueError("owner must be the SHA-256 hex digest of the API token (never the token)")
        if mode not in SONG_MODES:
            raise ValueError(f"mode must be one of {SONG_MODES}")
        if not isinstance(request, dict):
            raise ValueError("request must be a dict")
        if idempotency_key is not None and not (
            isinstance(idempotency_key, str) and 0 < len(idempotency_key) <= 255
        ):
            raise ValueError("idempotency_key must be a non-empty string of <= 255 characters")
        if webhook_url is not None and not (isinstance(webhook_url, str) and 0 < len(webhook_url) <= 2048):
            raise ValueError("webhook_url must be a non-empty string of <= 2048 characters")
        if parent_id is not None and not is_job_id(parent_id):
            raise ValueError("parent_id must be a job id")
        rhash = request_hash(mode, request, webhook_url)  # also proves it is JSON-serializable
        try:
            with self.db.tx() as conn:
                if self.db.pg and self._pg_serialize_creates:  # exact bound, no key races
                    conn.execute(text("SELECT pg_advisory_xact_lock(CAST(:k AS bigint))"),
                                 {"k": _CREATE_LOCK_KEY})
                if idempotency_key is not None:
                    existing = conn.execute(select(jobs).where(
                        jobs.c.owner == owner, jobs.c.idempotency_key == idempotency_key
                    )).mappings().first()
                    if existing is not None:
                        return self._replay(existing, rhash)
                now = self.db.now()
                audio_s = requested_audio_s(mode, request)
                self._check_quotas(conn, owner, audio_s, now)
                queued = conn.execute(
                    select(func.count()).select_from(jobs).where(jobs.c.status == "queued")
                ).scalar_one()
                if queued >= self.max_queued:
                    raise QueueFull(self._retry_after(conn), queued)
                row = conn.execute(insert(jobs).values(
                    id=uuid.uuid4().hex, owner=owner, mode=mode, request=request,
                    request_hash=rhash, idempotency_key=idempotency_key, webhook_url=webhook_url,
                    parent_id=parent_id, status="queued", attempts=0, cancel_requested=False, event_seq=1,
                    created_at=now, updated_at=now, audio_s=audio_s,
                ).returning(*jobs.c)).mappings().one()
                job = Job.from_row(row)
                self._append_event(conn, job.id, 1, "status", {"status": "queued"}, now)
                return job, True
        except sa_exc.IntegrityError:
            if idempotency_key is None:
                raise
            # Lost a race with a concurrent create for the same owner+key: replay theirs.
            with self.db.tx(write=False) as conn:
                existing = conn.execute(select(jobs).where(
                    jobs.c.owner == owner, jobs.c.idempotency_key == idempotency_key
                )).mappings().first()
            if existing is None:
                raise
            return self._replay(existing, rhash)

    # -- tenants: quotas, usage, keys -------------------------------------------------------

    def _key_of(self, conn: Connection, owner: str) -> ApiKey | None:
        row = conn.execute(select(api_keys).where(api_keys.c.owner == owner)).mappings().first()
        return None if row is None else ApiKey.from_row(row)

    def limits_for(self, key: ApiKey | None) -> Quotas:
        """An owner's quotas: none for admins (no key), else the defaults with the key's overrides."""
        return NO_QUOTAS if key is None else self.quotas.with_overrides(key.overrides)

    def _counters(self, conn: Connection, owner: str, now: datetime) -> dict[str, Any]:
        by_status = dict(conn.execute(
            select(jobs.c.status, func.count()).where(jobs.c.owner == owner, jobs.c.status.in_(_ACTIVE))
            .group_by(jobs.c.status)
        ).all())
        songs, audio_s = conn.execute(
            select(func.count(), func.coalesce(func.sum(jobs.c.audio_s), 0.0))
            .where(jobs.c.owner == owner, jobs.c.created_at >= _day_start(now))
        ).one()
        return {"queued": int(by_status.get("queued", 0)), "running": int(by_status.get("running", 0)),
                "songs_today": int(songs), "audio_s_today": float(audio_s or 0.0)}

    def _check_quotas(self, conn: Connection, owner: str, audio_s: float, now: datetime) -> None:
        """Raise KeyRevoked / QuotaExceeded for this submission (inside create's transaction)."""
        key = self._key_of(conn, owner)
        if key is not None and key.revoked:
            raise KeyRevoked()
        limits = self.limits_for(key)
        if limits == NO_QUOTAS and self.max_queued_per_owner is None:
            return
        used = self._counters(conn, owner, now)
        resets_s = (_day_start(now) + timedelta(days=1) - now).total_seconds()
        active = used["queued"] + used["running"]
        if limits.active_songs is not None and active >= limits.active_songs:
            raise QuotaExceeded("active_songs", limits.active_songs, self._retry_after(conn),
                                f": {active} queued or running")
        if limits.songs_per_day is not None and used["songs_today"] >= limits.songs_per_day:
            raise QuotaExceeded("songs_per_day", limits.songs_per_day, resets_s)
        if limits.audio_minutes_per_day is not None:
            cap_s = limits.audio_minutes_per_day * 60.0
            if used["audio_s_today"] + audio_s > cap_s + 1e-6:
                raise QuotaExceeded("audio_minutes_per_day", float(limits.audio_minutes_per_day), resets_s,
                                    f": {used['audio_s_today'] / 60:.1f} min used today, this song asks "
                                    f"for {audio_s / 60:.1f}")
        if self.max_queued_per_owner is not None and used["queued"] >= self.max_queued_per_owner:
            raise QuotaExceeded("max_queued_per_owner", self.max_queued_per_owner, self._retry_after(conn),
                                f": you have {used['queued']} songs waiting (your share of the queue)")

    def usage(self, owner: str) -> dict[str, Any]:
        """The owner's counters next to their limits (GET /v1/usage). Limits are None when unlimited."""
        with self.db.tx(write=False) as conn:
            now = self.db.now()
            key = self._key_of(conn, owner)
            used = self._counters(conn, owner, now)
        limits = self.limits_for(key)
        resets_at = _day_start(now) + timedelta(days=1)
        return {
            "key": key, "now": now, "resets_at": resets_at,
            "resets_in_s": int(math.ceil((resets_at - now).total_seconds())),
            "active_songs": {"used": used["queued"] + used["running"], "limit": limits.active_songs},
            "songs_per_day": {"used": used["songs_today"], "limit": limits.songs_per_day},
            "audio_minutes_per_day": {"used": round(used["audio_s_today"] / 60.0, 3),
                                      "limit": limits.audio_minutes_per_day},
            "queued": {"used": used["queued"], "limit": self.max_queued_per_owner},
            "running": used["running"],
        }

    def revoke_key(self, key_id: str, *, cancel_jobs: bool = True) -> tuple[ApiKey, int]:
        """Revoke an API key and (by default) cancel its queued songs and ask its running ones to
        stop, as the owner's own cancel would. Returns the key and how many songs were cancelled."""
        key = self.keys.revoke(key_id)
        cancelled = 0
        if cancel_jobs:
            with self.db.tx(write=False) as conn:
                ids = conn.execute(select(jobs.c.id).where(jobs.c.owner == key.owner, jobs.c.status.in_(_ACTIVE))
                                   ).scalars().all()
            for job_id in ids:
                if self.request_cancel(job_id, key.owner) is not None:
                    cancelled += 1
        return key, cancelled

    @staticmethod
    def _replay(row: Any, rhash: str) -> tuple[Job, bool]:
        job = Job.from_row(row)
        if job.request_hash != rhash:
            raise IdempotencyConflict(job.id)
        return job, False

    def _retry_after(self, conn: Connection) -> int:
        """Seconds until a queue slot likely frees: mean recent job duration / running jobs."""
        rows = conn.execute(
            select(jobs.c.started_at, jobs.c.finished_at)
            .where(jobs.c.status == "succeeded", jobs.c.started_at.is_not(None))
            .order_by(jobs.c.pk.desc()).limit(20)
        ).all()
        durations = [(f - s).total_seconds() for s, f in rows if s and f and f >= s]
        mean = sum(durations) / len(durations) if durations else self.default_job_duration_s
        running = conn.execute(
            select(func.count()).select_from(jobs).where(jobs.c.status == "running")
        ).scalar_one()
        return int(min(300, max(1, math.ceil(mean / max(1, running)))))

    def get(self, job_id: str, owner: str | None = None, *, deleted: bool = False) -> Job | None:
        """The job, or None if absent (or, when ``owner`` is given, owned by someone else, or
        deleted unless ``deleted``)."""
        if not is_job_id(job_id):
            return None
        stmt = select(jobs).where(jobs.c.id == job_id)
        if owner is not None:
            stmt = stmt.where(jobs.c.owner == owner)
            if not deleted:
                stmt = stmt.where(jobs.c.deleted_at.is_(None))
        with self.db.tx(write=False) as conn:
            row = conn.execute(stmt).mappings().first()
        return None if row is None else Job.from_row(row)

    def list(self, owner: str, *, limit: int = 20, before: str | None = None,
             statuses: Sequence[str] = (), modes: Sequence[str] = (),
             parent_id: str | None = None) -> tuple[list[Job], str | None]:
        """The owner's jobs newest first (deleted ones never), optionally only these statuses,
        modes or the edits of one song; pass the returned cursor as ``before`` for the next page."""
        if not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise ValueError("limit must be an int in 1..1000")
        if not set(statuses) <= set(JOB_STATUSES) or not set(modes) <= set(SONG_MODES):
            raise ValueError(f"statuses must be among {JOB_STATUSES} and modes among {SONG_MODES}")
        stmt = select(jobs).where(jobs.c.owner == owner, jobs.c.deleted_at.is_(None))
        if statuses:
            stmt = stmt.where(jobs.c.status.in_(sorted(set(statuses))))
        if modes:
            stmt = stmt.where(jobs.c.mode.in_(sorted(set(modes))))
        if parent_id is not None:
            stmt = stmt.where(jobs.c.parent_id == parent_id)
        if before is not None:
            stmt = stmt.where(jobs.c.pk < decode_cursor(before))
        stmt = stmt.order_by(jobs.c.pk.desc()).limit(limit + 1)
        with self.db.tx(write=False) as conn:
            rows = conn.execute(stmt).mappings().all()
        page = [Job.from_row(r) for r in rows[:limit]]
        next_cursor = encode_cursor(page[-1].pk) if len(rows) > limit else None
        return page, next_cursor

    def queue_position(self, job_id: str) -> int | None:
        """1-based position among queued jobs (1 = next to run); None when not queued.

        Claims take owners in turn, so this is the round-robin estimate: the job is its owner's
        k-th, and every other owner gets at most k - 1 turns before it (exact for one owner)."""
        if not is_job_id(job_id):
            return None
        with self.db.tx(write=False) as conn:
            row = conn.execute(select(jobs.c.pk, jobs.c.status, jobs.c.owner).where(jobs.c.id == job_id)).first()
            if row is None or row.status != "queued":
                return None
            k = int(conn.execute(
                select(func.count()).select_from(jobs)
                .where(jobs.c.status == "queued", jobs.c.owner == row.owner, jobs.c.pk <= row.pk)
            ).scalar_one())
            if k == 1:
                return 1  # the owner's next job: no other owner gets a turn before it (estimate)
            others = conn.execute(
                select(func.count()).where(jobs.c.status == "queued", jobs.c.owner != row.owner)
                .group_by(jobs.c.owner)
            ).scalars().all()
            return k + sum(min(int(n), k - 1) for n in others)

    def is_cancel_requested(self, job_id: str) -> bool:
        """True once the owner asked to cancel the job (or it is already cancelled)."""
        if not is_job_id(job_id):
            return False
        with self.db.tx(write=False) as conn:
            value = conn.execute(select(jobs.c.cancel_requested).where(jobs.c.id == job_id)).scalar()
        return bool(value)

    def events(self, job_id: str, after_seq: int = 0, limit: int = 1000) -> list[Event]:
        """The job's events with ``seq > after_seq`` in order (SSE resume: Last-Event-ID)."""
        if not is_job_id(job_id):
            return []
        stmt = (select(job_events).where(job_events.c.job_id == job_id, job_events.c.seq > after_seq)
                .order_by(job_events.c.seq).limit(max(1, int(limit))))
        with self.db.tx(write=False) as conn:
            return [Event.from_row(r) for r in conn.execute(stmt).mappings()]

    # -- worker side ------------------------------------------------------------------------

    def _fair_candidate(self, conn: Connection) -> Any:
        """The next queued job, fairly across owners, row-locked (SKIP LOCKED) on PostgreSQL.

        Owners with queued jobs are ranked by (running jobs, last time one of theirs started --
        never first, oldest queued job); the first owner whose oldest queued job is not locked by
        a concurrent claimer gets it. Within an owner the order stays FIFO. So a caller with 500
        queued songs holds back another caller's first song by at most one turn, not 500 songs.
        """
        q, r = jobs.alias("q"), jobs.alias("r")
        running = (select(func.count()).select_from(r)
                   .where(r.c.owner == q.c.owner, r.c.status == "running").scalar_subquery().label("running"))
        last = (select(func.max(r.c.started_at)).where(r.c.owner == q.c.owner)
                .scalar_subquery().label("last_started"))
        first = func.min(q.c.pk).label("first_pk")
        ranked = conn.execute(
            select(q.c.owner, first, running, last).where(q.c.status == "queued").group_by(q.c.owner)
            .order_by(running, last.nulls_first(), first).limit(16)
        ).all()
        if not ranked:
            return None  # nothing queued (the idle workers' usual poll)
        for ranked_owner in ranked:
            row = conn.execute(self.db.lock(
                select(jobs).where(jobs.c.status == "queued", jobs.c.owner == ranked_owner.owner)
                .order_by(jobs.c.pk).limit(1), skip_locked=True,
            )).mappings().first()
            if row is not None:
                return row
        # Every ranked owner's next job is being claimed right now: take any unlocked one.
        return conn.execute(self.db.lock(
            select(jobs).where(jobs.c.status == "queued").order_by(jobs.c.pk).limit(1), skip_locked=True,
        )).mappings().first()

    def claim(self, worker_id: str, on_ended: Callable[[str], None] | None = None) -> Job | None:
        """Atomically take a lease-expired running job (resumed) or else the next queued one,
        fairly across owners (``_fair_candidate``).

        Candidates found cancelled, or abandoned too often, end here instead; those that had
        started an attempt may have left objects in storage, so each one's id goes to `on_ended`
        (after the commit) for the caller to remove them: nothing else would."""
        if not worker_id:
            raise ValueError("worker_id is required")
        ended: list[str] = []
        job: Job | None = None
        with self.db.tx() as conn:
            now = self.db.now()
            for _ in range(1000):  # bounded: each iteration removes one candidate for good
                resumed = True
                row = conn.execute(self.db.lock(
                    select(jobs).where(jobs.c.status == "running", jobs.c.lease_expires_at <= now)
                    .order_by(jobs.c.lease_expires_at, jobs.c.pk).limit(1), skip_locked=True,
                )).mappings().first()
                if row is None:
                    resumed = False
                    row = self._fair_candidate(conn)
                if row is None:
                    break
                if row["cancel_requested"]:
                    self._terminal(conn, jobs.c.pk == row["pk"], "cancelled", now)
                    if row["attempts"]:
                        ended.append(row["id"])
                    continue
                if resumed and row["attempts"] >= self.max_attempts:
                    self._terminal(conn, jobs.c.pk == row["pk"], "failed", now, error=(
                        f"job abandoned: its worker stopped responding {row['attempts']} times"))
                    ended.append(row["id"])
                    continue
                new = conn.execute(update(jobs).where(jobs.c.pk == row["pk"]).values(
                    status="running", lease_owner=worker_id,
                    lease_expires_at=self._lease_until(now),
                    started_at=func.coalesce(jobs.c.started_at, _ts(now)),
                    attempts=jobs.c.attempts + 1, event_seq=jobs.c.event_seq + 1, updated_at=now,
                ).returning(*jobs.c)).mappings().one()
                job = Job.from_row(new)
                data: dict[str, Any] = {"status": "running", "attempt": job.attempts}
                if resumed:
                    data["resumed"] = True
                    log.warning("job %s: lease of %s expired; resumed by %s (attempt %d)",
                                job.id, row["lease_owner"], worker_id, job.attempts)
                self._append_event(conn, job.id, job.last_event_seq, "status", data, now)
                break
        if on_ended is not None:
            for job_id in ended:
                on_ended(job_id)
        return job

    def heartbeat(self, job_id: str, worker_id: str) -> Lease:
        """Renew the lease and report HELD, CANCEL_REQUESTED (renewed) or LOST (stop now)."""
        with self.db.tx() as conn:
            now = self.db.now()
            row = conn.execute(update(jobs).where(self._holder(job_id, worker_id))
                               .values(lease_expires_at=self._lease_until(now))
                               .returning(jobs.c.cancel_requested)).first()
        if row is None:
            return Lease.LOST
        return Lease.CANCEL_REQUESTED if row.cancel_requested else Lease.HELD

    def renew(self, job_id: str, worker_id: str) -> bool:
        """Extend the lease by ``lease_s``; False if this worker lost it (then it must stop)."""
        return self.heartbeat(job_id, worker_id) is not Lease.LOST

    def set_stage(self, job_id: str, worker_id: str, stage: str) -> bool:
        """Enter ``stage`` (resets progress, renews the lease, appends a "stage" event)."""
        if stage not in JOB_STAGES:
            raise ValueError(f"stage must be one of {JOB_STAGES}")
        with self.db.tx() as conn:
            now = self.db.now()
            seq = conn.execute(update(jobs).where(self._holder(job_id, worker_id)).values(
                stage=stage, progress_step=None, progress_total=None,
                lease_expires_at=self._lease_until(now), event_seq=jobs.c.event_seq + 1,
                updated_at=now,
            ).returning(jobs.c.event_seq)).scalar()
            if seq is None:
                return False
            self._append_event(conn, job_id, seq, "stage", {"stage": stage}, now)
            return True

    def set_progress(self, job_id: str, worker_id: str, step: int, total: int | None) -> bool:
        """Record progress (renews the lease, appends a "progress" event); one UPDATE + INSERT."""
        if not isinstance(step, int) or step < 0 or (
            total is not None and (not isinstance(total, int) or total < 0)
        ):
            raise ValueError("step and total must be non-negative ints (total may be None)")
        with self.db.tx() as conn:
            now = self.db.now()
            row = conn.execute(update(jobs).where(self._holder(job_id, worker_id)).values(
                progress_step=step, progress_total=total,
                lease_expires_at=self._lease_until(now), event_seq=jobs.c.event_seq + 1,
                updated_at=now,
            ).returning(jobs.c.event_seq, jobs.c.stage)).first()
            if row is None:
                return False
            self._append_event(conn, job_id, row.event_seq, "progress",
                               {"stage": row.stage, "step": step, "total": total}, now)
            return True

    def finish(self, job_id: str, worker_id: str, *, status: str, result: Any = None,
               error: str | None = None) -> bool:
        """Make the job terminal (lease holder only); clears the lease, queues the webhook."""
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"status must be one of {sorted(TERMINAL_STATUSES)}")
        if result is not None:
            canonical_json(result)  # fail before touching the database
        with self.db.tx() as conn:
            job = self._terminal(conn, self._holder(job_id, worker_id), status, self.db.now(),
                                 result=result, error=error)
        return job is not None

    def release(self, job_id: str, worker_id: str) -> bool:
        """Hand a running job back to the queue (graceful shutdown); False if not the holder.

        It keeps its place (FIFO by creation), stage/progress reset, and the claim it had is
        not counted (``attempts`` - 1). A job with a pending cancel becomes cancelled instead.
        """
        return self._requeue(job_id, worker_id, count_attempt=False, event={"released": True})

    def release_for_retry(self, job_id: str, worker_id: str, error: str | None = None) -> bool:
        """Requeue after a retryable failure (lease holder only); False if not the holder.

        Unlike :meth:`release`, the attempt counts (``attempts`` is kept, so callers can bound
        retries with ``attempts < max_attempts``). The job keeps its place at the front of the
        queue; ``error`` goes into the "status" event (``{"status": "queued", "retry": true,
        "error": ...}``), not into ``Job.error``. A pending cancel makes it cancelled instead.
        """
        event: dict[str, Any] = {"retry": True}
        if error is not None:
            event["error"] = truncate_text(error)
        return self._requeue(job_id, worker_id, count_attempt=True, event=event)

    def _requeue(self, job_id: str, worker_id: str, *, count_attempt: bool, event: dict[str, Any]) -> bool:
        with self.db.tx() as conn:
            now = self.db.now()
            row = conn.execute(self.db.lock(select(jobs).where(self._holder(job_id, worker_id)))
                               ).mappings().first()
            if row is None:
                return False
            if row["cancel_requested"]:
                return self._terminal(conn, jobs.c.pk == row["pk"], "cancelled", now) is not None
            values: dict[str, Any] = {}
            if not count_attempt:
                greatest = func.greatest if self.db.pg else func.max
                values["attempts"] = greatest(jobs.c.attempts - 1, 0)
            seq = conn.execute(update(jobs).where(jobs.c.pk == row["pk"]).values(
                status="queued", lease_owner=None, lease_expires_at=None, stage=None,
                progress_step=None, progress_total=None, event_seq=jobs.c.event_seq + 1,
                updated_at=now, **values,
            ).returning(jobs.c.event_seq)).scalar_one()
            self._append_event(conn, job_id, seq, "status", {"status": "queued", **event}, now)
            return True

    # -- owner actions ------------------------------------------------------------------------

    def request_cancel(self, job_id: str, owner: str) -> Job | None:
        """Cancel: queued → cancelled now; running → cancel_requested; terminal → unchanged."""
        if not is_job_id(job_id):
            return None
        with self.db.tx() as conn:
            now = self.db.now()
            row = conn.execute(self.db.lock(
                select(jobs).where(jobs.c.id == job_id, jobs.c.owner == owner)
            )).mappings().first()
            if row is None:
                return None
            if row["status"] == "queued":
                return self._terminal(conn, jobs.c.pk == row["pk"], "cancelled", now)
            if row["status"] == "running" and not row["cancel_requested"]:
                new = conn.execute(update(jobs).where(jobs.c.pk == row["pk"]).values(
                    cancel_requested=True, event_seq=jobs.c.event_seq + 1, updated_at=now,
                ).returning(*jobs.c)).mappings().one()
                job = Job.from_row(new)
                self._append_event(conn, job.id, job.last_event_seq, "cancel_requested", {}, now)
                return job
            return Job.from_row(row)

    def mark_deleted(self, job_id: str, owner: str) -> Job | None:
        """Tombstone the owner's song: cancel it if queued or running, forget its words and
        result (the caller deletes its objects), keep the row so a repeated DELETE is answered the
        same. Returns the job as it was before (None: no such job of this owner)."""
        if not is_job_id(job_id):
            return None
        job = self.request_cancel(job_id, owner)
        if job is None:
            return None
        with self.db.tx() as conn:
            now = self.db.now()
            conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.owner == owner,
                                            jobs.c.deleted_at.is_(None)).values(
                deleted_at=now, updated_at=now, request={}, result=None))
        return job

    def is_deleted(self, job_id: str) -> bool:
        with self.db.tx(write=False) as conn:
            return conn.execute(select(jobs.c.deleted_at).where(jobs.c.id == job_id)).scalar() is not None

    def purge(self, finished_before: datetime) -> int:
        """Delete terminal jobs finished before the cutoff (with their events and deliveries),
        except those with a webhook still pending; returns how many jobs were deleted."""
        cutoff = as_utc(finished_before)
        pending = exists().where(webhook_deliveries.c.job_id == jobs.c.id,
                                 webhook_deliveries.c.status == "pending")
        with self.db.tx() as conn:
            ids = select(jobs.c.id).where(
                jobs.c.status.in_(sorted(TERMINAL_STATUSES)), jobs.c.finished_at < cutoff, ~pending,
            ).scalar_subquery()
            # Explicit child deletes: ON DELETE CASCADE needs PRAGMA foreign_keys on SQLite.
            delivery_ids = select(webhook_deliveries.c.id).where(webhook_deliveries.c.job_id.in_(ids))
            conn.execute(delete(webhook_attempts).where(webhook_attempts.c.delivery_id.in_(delivery_ids)))
            conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.job_id.in_(ids)))
            conn.execute(delete(job_events).where(job_events.c.job_id.in_(ids)))
            return int(conn.execute(delete(jobs).where(jobs.c.id.in_(ids))).rowcount or 0)
