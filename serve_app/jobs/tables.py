"""Table definitions (SQLAlchemy Core) shared by the store and the migrations.

The migrations in ``migrations/versions`` create exactly these tables; when you change them,
add a new revision (see ``migrations/__init__.py``) -- ``test_schema_matches_models`` fails
otherwise.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

from .util import as_utc


NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

# 64-bit on PostgreSQL; SQLite needs exactly INTEGER PRIMARY KEY for its rowid autoincrement.
BigPK = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in and out: ``timestamptz`` on PostgreSQL, naive-UTC sortable text
    (``YYYY-MM-DD HH:MM:SS.ffffff``) on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else as_utc(value)


def JSONType() -> Any:  # noqa: N802 - reads like a type
    """JSON (SQL NULL for None): JSONB on PostgreSQL, JSON text on SQLite."""
    return JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


jobs = Table(
    "jobs",
    metadata,
    Column("pk", BigPK, primary_key=True, autoincrement=True),  # FIFO order + list cursor
    Column("id", String(32), nullable=False, unique=True),
    Column("owner", String(64), nullable=False),
    Column("mode", String(32), nullable=False),
    Column("request", JSONType(), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("idempotency_key", String(255), nullable=True),
    Column("webhook_url", Text, nullable=True),
    Column("status", String(16), nullable=False),
    Column("stage", String(16), nullable=True),
    Column("progress_step", Integer, nullable=True),
    Column("progress_total", Integer, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", Text, nullable=True),
    Column("result", JSONType(), nullable=True),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("lease_owner", String(255), nullable=True),
    Column("lease_expires_at", UTCDateTime(), nullable=True),
    Column("event_seq", Integer, nullable=False, default=0),  # seq of the last event
    Column("created_at", UTCDateTime(), nullable=False),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("parent_id", String(32), nullable=True),  # an edit's source song (0002)
    Column("deleted_at", UTCDateTime(), nullable=True),  # a deleted song's tombstone (0002)
    Column("audio_s", Float(), nullable=True),  # requested seconds x takes: the audio quota's cost (0003)
    UniqueConstraint("owner", "idempotency_key"),
    Index(None, "owner", "pk"),
    Index(None, "status", "pk"),
    Index(None, "status", "lease_expires_at"),
    Index(None, "parent_id"),
    Index(None, "owner", "status"),  # active songs per owner; the fair claim's running counts (0003)
    Index(None, "owner", "created_at"),  # songs and audio per day (0003)
    Index(None, "owner", "started_at"),  # the fair claim's "least recently served" (0003)
)

job_events = Table(
    "job_events",
    metadata,
    Column("job_id", String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("type", String(32), nullable=False),
    Column("data", JSONType(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", BigPK, primary_key=True, autoincrement=True),
    Column("job_id", String(32), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("url", Text, nullable=False),
    Column("event", String(32), nullable=False),
    Column("payload", JSONType(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("lease_owner", String(255), nullable=True),
    Column("lease_expires_at", UTCDateTime(), nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    Index(None, "status", "next_attempt_at"),
    Index(None, "job_id"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("delivery_id", BigPK, ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
           primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("job_id", String(32), nullable=False),
    Column("url", Text, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("duration_ms", Integer, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

# API keys (0003): only the SHA-256 of each secret is stored. `owner` is what the key's jobs are
# stored under, derived from the key's id (auth.key_owner_digest), so rotating the secret keeps
# the songs. Quota columns are per-key overrides: NULL = the configured default, -1 = unlimited.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("digest", String(64), nullable=False, unique=True),
    Column("owner", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("rotated_at", UTCDateTime(), nullable=True),
    Column("last_used_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Column("active_songs", Integer, nullable=True),
    Column("songs_per_day", Integer, nullable=True),
    Column("audio_minutes_per_day", Float(), nullable=True),
)

# Shared request-rate state (0003): one GCRA row per caller (its owner digest). `tat` is the
# "theoretical arrival time" in epoch seconds of the application clock; every ingress replica
# updates the same row, so N replicas allow the configured rate once, not N times.
rate_limits = Table(
    "rate_limits",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("tat", Float(), nullable=False),
)
