"""Immutable snapshots returned by the store. Datetimes are aware UTC ``datetime`` objects;
``public()`` renders them as ISO 8601 strings (``...T07:35:25.123Z``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from serve_app.vocabulary import TERMINAL_STATUSES

from .util import iso


class Lease(str, Enum):
    """What :meth:`JobStore.heartbeat` found: keep going, stop because of a cancel, or stop."""

    HELD = "held"
    CANCEL_REQUESTED = "cancel_requested"  # lease renewed; finish(status="cancelled") soon
    LOST = "lost"  # another worker owns the job now (or it is terminal): stop, write nothing


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    owner: str
    mode: str
    request: dict[str, Any]
    status: str
    stage: str | None
    progress_step: int | None
    progress_total: int | None
    attempts: int
    error: str | None
    result: Any
    idempotency_key: str | None
    request_hash: str
    webhook_url: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    cancel_requested: bool
    last_event_seq: int
    pk: int  # internal insertion order (FIFO, cursors); not part of the API
    parent_id: str | None = None  # an edit's source song
    deleted_at: datetime | None = None  # set when the owner deleted the song (a tombstone)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        return cls(
            id=row["id"], owner=row["owner"], mode=row["mode"], request=row["request"],
            status=row["status"], stage=row["stage"], progress_step=row["progress_step"],
            progress_total=row["progress_total"], attempts=row["attempts"], error=row["error"],
            result=row["result"], idempotency_key=row["idempotency_key"],
            request_hash=row["request_hash"], webhook_url=row["webhook_url"],
            created_at=row["created_at"], started_at=row["started_at"],
            finished_at=row["finished_at"], updated_at=row["updated_at"],
            lease_owner=row["lease_owner"], lease_expires_at=row["lease_expires_at"],
            cancel_requested=bool(row["cancel_requested"]), last_event_seq=row["event_seq"],
            pk=row["pk"], parent_id=row.get("parent_id"), deleted_at=row.get("deleted_at"),
        )

    def public(self) -> dict[str, Any]:
        """The API view: no owner hash, request hash or lease internals; ISO timestamps."""
        progress = None
        if self.progress_step is not None or self.progress_total is not None:
            progress = {"step": self.progress_step, "total": self.progress_total}
        return {
            "id": self.id,
            "status": self.status,
            "mode": self.mode,
            "stage": self.stage,
            "progress": progress,
            "attempts": self.attempts,
            "cancel_requested": self.cancel_requested,
            "error": self.error,
            "result": self.result,
            "request": self.request,
            "parent_id": self.parent_id,
            "idempotency_key": self.idempotency_key,
            "webhook_url": self.webhook_url,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "updated_at": iso(self.updated_at),
            "last_event_seq": self.last_event_seq,
        }


@dataclass(frozen=True, slots=True)
class Event:
    job_id: str
    seq: int
    type: str
    data: dict[str, Any]
    created_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Event:
        return cls(job_id=row["job_id"], seq=row["seq"], type=row["type"], data=row["data"],
                   created_at=row["created_at"])

    def public(self) -> dict[str, Any]:
        """``{"seq", "type", "data", "created_at"}`` (SSE: ``id: seq``, ``event: type``)."""
        return {"seq": self.seq, "type": self.type, "data": self.data,
                "created_at": iso(self.created_at)}


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    id: int
    job_id: str
    url: str
    event: str  # "job.succeeded" | "job.failed" | "job.cancelled"
    payload: dict[str, Any]  # Job.public() at the moment the job became terminal
    status: str  # "pending" | "delivered" | "failed" (gave up)
    attempts: int  # tries made so far
    max_attempts: int
    next_attempt_at: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> WebhookDelivery:
        return cls(**{name: row[name] for name in cls.__slots__})  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class WebhookAttempt:
    delivery_id: int
    attempt: int  # 1-based
    job_id: str
    url: str
    status_code: int | None
    error: str | None
    duration_ms: int | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> WebhookAttempt:
        return cls(**{name: row[name] for name in cls.__slots__})  # type: ignore[attr-defined]
