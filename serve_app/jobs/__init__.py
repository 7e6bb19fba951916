"""Durable asynchronous song jobs: the store the HTTP routes, job workers and webhook sender
sit on. See ``store.py`` for the concurrency model and ``JobStore`` for the API.

    from serve_app.jobs import JobStore, owner_digest
    store = JobStore("sqlite:///var/jobs.db")          # or postgresql+psycopg://...
    job, created = store.create(owner_digest(token), "description", {"description": "..."})
"""

from __future__ import annotations

from .errors import (
    IdempotencyConflict,
    InvalidCursor,
    JobStoreError,
    MigrationError,
    QueueFull,
    StoreUnavailable,
)
from .models import MODES, STAGES, STATUSES, TERMINAL_STATUSES
from .records import Event, Job, Lease, WebhookAttempt, WebhookDelivery
from .store import JobStore
from .util import owner_digest, request_hash

__all__ = [
    "MODES",
    "STAGES",
    "STATUSES",
    "TERMINAL_STATUSES",
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
    "owner_digest",
    "request_hash",
]
