"""Exceptions raised by the job store (routes map them to HTTP statuses)."""

from __future__ import annotations


class JobStoreError(Exception):
    """Base class for job store errors."""


class StoreUnavailable(JobStoreError):
    """The database cannot be reached or is busy (HTTP 503); the message never holds a password."""


class IdempotencyConflict(JobStoreError):
    """Same owner + Idempotency-Key was used with a different request body (HTTP 409/422)."""

    def __init__(self, job_id: str) -> None:
        super().__init__("idempotency key already used with a different request")
        self.job_id = job_id


class QueueFull(JobStoreError):
    """Too many queued jobs (HTTP 429/503 with ``Retry-After: retry_after_s``)."""

    def __init__(self, retry_after_s: int, queued: int | None = None) -> None:
        self.retry_after_s = max(1, int(retry_after_s))
        self.queued = queued
        super().__init__(f"job queue is full; retry after {self.retry_after_s} s")


class InvalidCursor(JobStoreError, ValueError):
    """A pagination cursor that this store did not issue (HTTP 400)."""


class MigrationError(JobStoreError):
    """The database schema cannot be brought to this code's version."""
