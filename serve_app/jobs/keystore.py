"""Tenants in the job database: API keys (digests only), their quotas and shared request rates.

- ``KeyStore``: create (the secret is returned once and never stored), list, revoke, rotate, set
  quota overrides, look up by the secret's digest, record use (``last_used_at``, rate-bounded).
- ``Quotas``: the limits a key's submissions are checked against (defaults + the key's overrides);
  ``JobStore.create`` checks them in the insert's transaction.
- ``SharedRateLimits``: one GCRA row per caller, updated by a single conditional UPDATE, so every
  ingress replica spends the same budget.

See docs/tenants.md for the rules and their reasons.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from serve_app.auth import KEY_SECRET_PREFIX, key_owner_digest, new_key_secret, owner_digest

from .db import Database
from .errors import JobStoreError
from .tables import api_keys, rate_limits

UNLIMITED = -1  # a quota override meaning "no limit"
QUOTA_NAMES = ("active_songs", "songs_per_day", "audio_minutes_per_day")
MAX_NAME_CHARS = 200


class QuotaExceeded(JobStoreError):
    """A caller's quota (or its share of the queue) is used up (HTTP 429 with Retry-After)."""

    def __init__(self, quota: str, limit: float, retry_after_s: float, detail: str = "") -> None:
        self.quota, self.limit = quota, limit
        self.retry_after_s = max(1, int(math.ceil(retry_after_s)))
        shown = f"{limit:g}" if isinstance(limit, float) else str(limit)
        verb = "resets" if quota.endswith("_per_day") else "retry"
        super().__init__(f"quota {quota} ({shown}) reached{detail}; {verb} in {self.retry_after_s} s")


class KeyRevoked(JobStoreError):
    """The API key was revoked (HTTP 401); seen at submit even inside a replica's cache TTL."""

    def __init__(self) -> None:
        super().__init__("this API key was revoked")


class KeyNotFound(JobStoreError, LookupError):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"no API key {key_id!r}")


@dataclass(frozen=True)
class Quotas:
    """Limits; None = unlimited. `active_songs`: queued + running; the others per UTC day."""

    active_songs: int | None = None
    songs_per_day: int | None = None
    audio_minutes_per_day: float | None = None

    @classmethod
    def from_args(cls, args: Any) -> Quotas:
        """From a QuotaArgs (serve_app.args) or anything with the same attributes."""
        return cls(**{n: getattr(args, n) for n in QUOTA_NAMES})

    def with_overrides(self, overrides: dict[str, Any]) -> Quotas:
        """Per-key overrides on top: None keeps the default, UNLIMITED (-1) lifts the limit."""
        changes = {}
        for name in QUOTA_NAMES:
            value = overrides.get(name)
            if value is not None:
                changes[name] = None if value == UNLIMITED else value
        return replace(self, **changes)


NO_QUOTAS = Quotas()


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    owner: str
    created_at: datetime
    rotated_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    overrides: dict[str, Any]  # quota name -> override (only the ones set)

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @classmethod
    def from_row(cls, row: Any) -> ApiKey:
        return cls(id=row["id"], name=row["name"], owner=row["owner"], created_at=row["created_at"],
                   rotated_at=row["rotated_at"], last_used_at=row["last_used_at"], revoked_at=row["revoked_at"],
                   overrides={n: row[n] for n in QUOTA_NAMES if row[n] is not None})

    def public(self) -> dict[str, Any]:
        """What `keys list` shows: never the digest (and the secret is not stored at all)."""
        from .util import iso

        return {"id": self.id, "name": self.name, "created_at": iso(self.created_at),
                "rotated_at": iso(self.rotated_at), "last_used_at": iso(self.last_used_at),
                "revoked_at": iso(self.revoked_at), "quota_overrides": dict(self.overrides)}


def check_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """Validated quota overrides: known names; None (default), -1 (unlimited) or a value >= 0."""
    out: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in QUOTA_NAMES:
            raise ValueError(f"unknown quota {name!r}; quotas are {', '.join(QUOTA_NAMES)}")
        if value is None:
            out[name] = None
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise ValueError(f"quota {name} must be a number, -1 (unlimited) or empty (the default)")
        if value < 0 and value != UNLIMITED:
            raise ValueError(f"quota {name} must be >= 0, or -1 for unlimited")
        if name != "audio_minutes_per_day" and value != int(value):
            raise ValueError(f"quota {name} must be a whole number")
        out[name] = float(value) if name == "audio_minutes_per_day" else int(value)
    return out


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


class KeyStore:
    """API keys on the job store's database (``JobStore.keys``). Every method is one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, name: str, quotas: dict[str, Any] | None = None) -> tuple[ApiKey, str]:
        """A new key; returns it and its secret (shown once: only its digest is stored)."""
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
            raise ValueError(f"a key needs a name of 1-{MAX_NAME_CHARS} characters")
        overrides = check_overrides(quotas or {})
        key_id, secret = new_key_id(), new_key_secret()
        with self.db.tx() as conn:
            row = conn.execute(insert(api_keys).values(
                id=key_id, name=name.strip(), digest=owner_digest(secret), owner=key_owner_digest(key_id),
                created_at=self.db.now(), **overrides,
            ).returning(*api_keys.c)).mappings().one()
        return ApiKey.from_row(row), secret

    def list(self, *, include_revoked: bool = True) -> list[ApiKey]:
        stmt = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if not include_revoked:
            stmt = stmt.where(api_keys.c.revoked_at.is_(None))
        with self.db.tx(write=False) as conn:
            return [ApiKey.from_row(r) for r in conn.execute(stmt).mappings()]

    def get(self, key_id: str) -> ApiKey | None:
        with self.db.tx(write=False) as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
        return None if row is None else ApiKey.from_row(row)

    def by_owner(self, owner: str) -> ApiKey | None:
        with self.db.tx(write=False) as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.owner == owner)).mappings().first()
        return None if row is None else ApiKey.from_row(row)

    def lookup(self, secret_digest: str) -> ApiKey | None:
        """The key whose secret has this SHA-256 (hex), revoked or not; None when there is none."""
        with self.db.tx(write=False) as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.digest == secret_digest)).mappings().first()
        return None if row is None else ApiKey.from_row(row)

    def revoke(self, key_id: str) -> ApiKey:
        """Refuse the key from now on (every replica within its cache TTL; submissions at once).
        Revoking twice keeps the first time. Raises KeyNotFound. ``JobStore.revoke_key`` also
        cancels the key's queued and running songs."""
        with self.db.tx() as conn:
            now = self.db.now()
            row = conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(
                revoked_at=func.coalesce(api_keys.c.revoked_at, now),
            ).returning(*api_keys.c)).mappings().first()
            if row is None:
                raise KeyNotFound(key_id)
            conn.execute(delete(rate_limits).where(rate_limits.c.key == row["owner"]))
        return ApiKey.from_row(row)

    def rotate(self, key_id: str) -> tuple[ApiKey, str]:
        """A new secret for the key (the old one stops working); same id, same owner, same songs and
        quotas. A revoked key cannot be rotated back to life. Raises KeyNotFound / ValueError."""
        secret = new_key_secret()
        with self.db.tx() as conn:
            now = self.db.now()
            row = conn.execute(update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                               .values(digest=owner_digest(secret), rotated_at=now)
                               .returning(*api_keys.c)).mappings().first()
            if row is None:
                exists_ = conn.execute(select(api_keys.c.id).where(api_keys.c.id == key_id)).first()
                if exists_ is None:
                    raise KeyNotFound(key_id)
                raise ValueError(f"API key {key_id} is revoked; create a new one")
        return ApiKey.from_row(row), secret

    def set_quotas(self, key_id: str, quotas: dict[str, Any]) -> ApiKey:
        """Set (or with None, clear back to the default) some of the key's quota overrides."""
        values = check_overrides(quotas)
        if not values:
            raise ValueError("no quota given")
        with self.db.tx() as conn:
            row = conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(**values)
                               .returning(*api_keys.c)).mappings().first()
        if row is None:
            raise KeyNotFound(key_id)
        return ApiKey.from_row(row)

    def touch(self, key_id: str, now: datetime | None = None, min_interval_s: float = 60.0) -> bool:
        """Record a use: writes last_used_at only when it is older than `min_interval_s` (so at most
        about once a minute per key, whatever the request rate). True when it wrote."""
        now = now or self.db.now()
        stale = now - timedelta(seconds=min_interval_s)
        with self.db.tx() as conn:
            row = conn.execute(update(api_keys).where(
                api_keys.c.id == key_id,
                or_(api_keys.c.last_used_at.is_(None), api_keys.c.last_used_at <= stale),
            ).values(last_used_at=now).returning(api_keys.c.id)).first()
        return row is not None


def is_key_secret(token: str | None) -> bool:
    return bool(token) and token.startswith(KEY_SECRET_PREFIX)


class SharedRateLimits:
    """GCRA (the token bucket's twin: `burst` at once, refilled at `rate_per_s`) with its one
    number per caller, the theoretical arrival time, kept in ``rate_limits``.

    A request is allowed when ``max(tat, now) + T - now <= burst * T`` (T = 1 / rate) and then
    ``tat`` becomes ``max(tat, now) + T``. The test and the write are one UPDATE ... WHERE, so
    concurrent replicas (row lock on PostgreSQL, the write lock on SQLite) can never both spend
    the last unit. Times are the application clock (``Database.now``), like leases."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def take(self, key: str, rate_per_s: float, burst: int, now: datetime | None = None) -> float:
        """0 when allowed (and counted), else the seconds until a request would be."""
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        interval = 1.0 / rate_per_s
        window = burst * interval
        greatest = func.greatest if self.db.pg else func.max
        with self.db.tx() as conn:
            # Read the clock inside the transaction: on SQLite it holds the write lock already, so
            # the times the row sees only move forward.
            t = (now or self.db.now()).timestamp()
            start = greatest(rate_limits.c.tat, t)
            spend = update(rate_limits).where(
                rate_limits.c.key == key, start + interval - t <= window + 1e-9,
            ).values(tat=start + interval).returning(rate_limits.c.tat)
            if conn.execute(spend).first() is not None:
                return 0.0
            ins = (pg_insert if self.db.pg else sqlite_insert)(rate_limits).values(key=key, tat=t + interval)
            ins = ins.on_conflict_do_nothing(index_elements=["key"]).returning(rate_limits.c.key)
            if conn.execute(ins).first() is not None:
                return 0.0  # the caller's first request
            # Either over the limit, or (PostgreSQL) a concurrent first request inserted the row
            # after our UPDATE missed it: try once more now that it exists.
            if conn.execute(spend).first() is not None:
                return 0.0
            tat = conn.execute(select(rate_limits.c.tat).where(rate_limits.c.key == key)).scalar_one()
        return max(1e-3, max(tat, t) + interval - t - window)

    def forget(self, key: str) -> None:
        with self.db.tx() as conn:
            conn.execute(delete(rate_limits).where(rate_limits.c.key == key))

