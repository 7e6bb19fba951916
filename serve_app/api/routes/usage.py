"""GET /v1/usage: the caller's own counters next to their limits (docs/tenants.md)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from serve_app.api.deps import CallerDep, Svc, off_loop
from serve_app.jobs.util import iso

router = APIRouter(prefix="/v1", tags=["usage"])


class Counter(BaseModel):
    used: int | float = Field(description="Used so far (today, for the per-day quotas).")
    limit: int | float | None = Field(description="The limit; null when there is none.")


class RateLimitInfo(BaseModel):
    requests_per_minute: float
    burst: int
    shared: bool = Field(description="True: counted across every ingress replica (in the job database).")


class Usage(BaseModel):
    """What you have used and what you may use. Per-day counters reset at 00:00 UTC."""

    caller: Literal["api_key", "admin"] = Field(description="api_key: a key from the job database; admin: a "
                                                            "token from the server's environment (no quotas).")
    key_id: str | None = Field(default=None, description="Your API key's id (never its secret).")
    key_name: str | None = None
    active_songs: Counter = Field(description="Songs queued or running now.")
    songs_per_day: Counter = Field(description="Songs submitted today.")
    audio_minutes_per_day: Counter = Field(description="Minutes of audio requested today (duration x variations).")
    queued: Counter = Field(description="Your songs waiting in the queue, and your share of it.")
    running: int = Field(description="Your songs being made now.")
    resets_at: str = Field(description="When the per-day counters reset (ISO 8601, UTC).")
    resets_in_s: int
    rate_limit: RateLimitInfo | None = Field(default=None, description="Requests per caller; null when off.")


@router.get("/usage", response_model=Usage, operation_id="get_usage")
async def get_usage(svc: Svc, caller: CallerDep) -> Usage:
    """Your counters and limits: active songs, songs and audio minutes today, your queue share."""
    u = await off_loop(svc.jobs.usage, caller.owner)
    rl = svc.rate_limit
    return Usage(
        caller="admin" if caller.admin else "api_key", key_id=caller.key_id, key_name=caller.name,
        active_songs=Counter(**u["active_songs"]), songs_per_day=Counter(**u["songs_per_day"]),
        audio_minutes_per_day=Counter(**u["audio_minutes_per_day"]), queued=Counter(**u["queued"]),
        running=u["running"], resets_at=iso(u["resets_at"]), resets_in_s=u["resets_in_s"],
        rate_limit=None if rl is None or not rl.enabled else RateLimitInfo(
            requests_per_minute=rl.requests_per_minute, burst=rl.burst,
            shared=getattr(svc.jobs, "rates", None) is not None),
    )
