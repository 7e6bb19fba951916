"""Song jobs: the durable store (jobs, events, webhook deliveries), the workers that run them
(`runner.py`), the webhook sender (`webhooks.py`) and its URL guard (`urlguard.py`).

    from serve_app.jobs import JobStore
    from serve_app.auth import owner_digest
    store = JobStore("sqlite:///var/jobs.db")          # or postgresql+psycopg://...
    job, created = store.create(owner_digest(token), "description", {"full_described_song": "..."})

The database layer: `db.py` (engines and transactions), `tables.py` (the tables), `migrations/`.
"""

from __future__ import annotations

from serve_app.auth import owner_digest

from .errors import (
    IdempotencyConflict,
    InvalidCursor,
    JobStoreError,
    MigrationError,
    QueueFull,
    StoreUnavailable,
)
from .records import Event, Job, Lease, WebhookAttempt, WebhookDelivery
from .store import JobStore
from .util import request_hash
from .webhook_store import WebhookStore

__all__ = [
    "Event",
    "IdempotencyConflict",
    "InvalidCursor",
    "Job",
    "JobStore",
    "JobStoreError",
    "Lease",
    "MigrationError",
    "QueueFull",
    "StoreUnavailable",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookStore",
    "owner_digest",
    "request_hash",
]
