"""Webhook deliveries: one row per finished job with a webhook_url, leased by a sender, every try
logged. Shares the job store's database, so a delivery is enqueued in the same transaction that
makes its job terminal (no finished job without its delivery, no delivery without its job)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, or_, select, update

from .db import Database
from .records import Job, WebhookAttempt, WebhookDelivery
from .tables import webhook_attempts, webhook_deliveries
from .util import as_utc, backoff_s, truncate_text


class WebhookStore:
    def __init__(self, db: Database, *, max_attempts: int = 8, backoff_base_s: float = 10.0,
                 backoff_max_s: float = 3600.0, jitter: float = 0.1) -> None:
        if max_attempts < 1:
            raise ValueError("webhook max_attempts must be >= 1")
        self.db = db
        self.max_attempts = int(max_attempts)
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self.jitter = float(jitter)

    def enqueue(self, conn: Connection, job: Job, now: datetime) -> None:
        """Inside the job's terminal transaction: one pending delivery of its final state."""
        conn.execute(insert(webhook_deliveries).values(
            job_id=job.id, url=job.webhook_url, event=f"job.{job.status}", payload=job.public(),
            status="pending", attempts=0, max_attempts=self.max_attempts,
            next_attempt_at=now, created_at=now, updated_at=now,
        ))

    def claim_due(self, worker_id: str, now: datetime | None = None,
                  lease_s: float = 30.0, limit: int = 10) -> list[WebhookDelivery]:
        """Atomically lease up to ``limit`` pending deliveries that are due (oldest first)."""
        if not worker_id:
            raise ValueError("worker_id is required")
        d = webhook_deliveries
        with self.db.tx() as conn:
            now = as_utc(now) if now is not None else self.db.now()
            ids = conn.execute(self.db.lock(
                select(d.c.id).where(
                    d.c.status == "pending", d.c.next_attempt_at <= now,
                    or_(d.c.lease_owner.is_(None), d.c.lease_expires_at <= now),
                ).order_by(d.c.next_attempt_at, d.c.id).limit(max(1, int(limit))),
                skip_locked=True,
            )).scalars().all()
            if not ids:
                return []
            rows = conn.execute(update(d).where(d.c.id.in_(ids)).values(
                lease_owner=worker_id, lease_expires_at=now + timedelta(seconds=lease_s),
                updated_at=now,
            ).returning(*d.c)).mappings().all()
        out = [WebhookDelivery.from_row(r) for r in rows]
        out.sort(key=lambda w: (w.next_attempt_at, w.id))
        return out

    def record_attempt(self, delivery_id: int, worker_id: str, *,
                       status_code: int | None = None, error: str | None = None,
                       duration_ms: int | None = None, give_up: bool = False,
                       now: datetime | None = None) -> WebhookDelivery | None:
        """Log one try (2xx and no error = delivered); else retry with backoff or give up after
        ``max_attempts`` (or at once with ``give_up``). None if this worker holds no lease."""
        d = webhook_deliveries
        with self.db.tx() as conn:
            now = as_utc(now) if now is not None else self.db.now()
            row = conn.execute(self.db.lock(select(d).where(
                d.c.id == delivery_id, d.c.lease_owner == worker_id, d.c.status == "pending",
            ))).mappings().first()
            if row is None:
                return None
            attempt = row["attempts"] + 1
            conn.execute(insert(webhook_attempts).values(
                delivery_id=delivery_id, attempt=attempt, job_id=row["job_id"], url=row["url"],
                status_code=status_code, error=truncate_text(error), duration_ms=duration_ms,
                created_at=now,
            ))
            ok = error is None and status_code is not None and 200 <= status_code < 300
            values: dict[str, Any] = {
                "attempts": attempt, "last_status_code": status_code, "last_error": truncate_text(error),
                "lease_owner": None, "lease_expires_at": None, "updated_at": now,
            }
            if ok:
                values.update(status="delivered", finished_at=now)
            elif give_up or attempt >= row["max_attempts"]:
                values.update(status="failed", finished_at=now)
            else:
                values["next_attempt_at"] = now + timedelta(seconds=self.backoff(attempt))
            new = conn.execute(update(d).where(d.c.id == delivery_id).values(**values)
                               .returning(*d.c)).mappings().one()
        return WebhookDelivery.from_row(new)

    def backoff(self, attempts_done: int) -> float:
        """Seconds before the next try after ``attempts_done`` failed tries (exponential, jittered)."""
        return backoff_s(attempts_done, base_s=self.backoff_base_s, max_s=self.backoff_max_s, jitter=self.jitter)

    def deliveries(self, job_id: str) -> list[WebhookDelivery]:
        """All webhook deliveries of a job, oldest first."""
        d = webhook_deliveries
        with self.db.tx(write=False) as conn:
            rows = conn.execute(select(d).where(d.c.job_id == job_id).order_by(d.c.id)).mappings()
            return [WebhookDelivery.from_row(r) for r in rows]

    def attempts(self, delivery_id: int) -> list[WebhookAttempt]:
        """The logged tries of one delivery, in order."""
        a = webhook_attempts
        with self.db.tx(write=False) as conn:
            rows = conn.execute(select(a).where(a.c.delivery_id == delivery_id)
                                .order_by(a.c.attempt)).mappings()
            return [WebhookAttempt.from_row(r) for r in rows]
