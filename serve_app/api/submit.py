"""Submitting a song job and waiting for it: what the async and the seed's sync routes share."""

from __future__ import annotations

import asyncio

from serve_app.api.deps import Services, off_loop
from serve_app.api.errors import SongDidNotFinish, SongStillRunning, SongWasCancelled, WebhookRefused
from serve_app.jobs.records import Job
from serve_app.vocabulary import SongMode


async def submit(svc: Services, owner: str, mode: SongMode, request: dict, *, idempotency_key: str | None = None,
                 webhook_url: str | None = None, parent_id: str | None = None) -> tuple[Job, bool]:
    """Queue a job (or find the one this Idempotency-Key made); True when it is new."""
    if webhook_url:
        try:
            await svc.url_guard(webhook_url)
        except (ValueError, PermissionError) as exc:
            raise WebhookRefused(str(exc)) from None
    job, created = await off_loop(svc.jobs.create, owner, SongMode(mode).value, request,
                                  idempotency_key=idempotency_key, webhook_url=webhook_url, parent_id=parent_id)
    if created:
        svc.runner.wake()
    return job, created


async def finished_song(svc: Services, job: Job) -> dict:
    """The seed's synchronous contract over a job: wait for it; a dropped connection leaves it running."""
    try:
        job = await svc.runner.wait(job.id, svc.song_timeout_s)
    except asyncio.TimeoutError:
        raise SongStillRunning(job.id, svc.song_timeout_s) from None
    if job.status == "succeeded":
        return job.result
    if job.status == "cancelled":
        raise SongWasCancelled(job.id)
    raise SongDidNotFinish(job.error or "song failed")
