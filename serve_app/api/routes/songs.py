"""Song jobs: submit, list, read, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse

from serve_app.api.deps import JobId, Owner, Svc, off_loop
from serve_app.api.errors import JobNotFound
from serve_app.api.schemas import SongCreate, SongJobList, SongJobPublic
from serve_app.api.submit import submit
from serve_app.api.views import job_public

router = APIRouter(prefix="/v1/songs", tags=["songs"])


@router.post("", response_model=SongJobPublic, status_code=202)
async def create_song(
    body: SongCreate,
    request: Request,
    svc: Svc,
    owner: Owner,
    idempotency_key: Annotated[
        str | None,
        Header(min_length=1, max_length=200, description="Same key and body: same job; other body: 409."),
    ] = None,
) -> JSONResponse:
    """Queue a song; answers 202 at once with the job and its Location."""
    job, created = await submit(svc, owner, body.mode, body.song_request(),
                                idempotency_key=idempotency_key, webhook_url=body.webhook_url)
    public = await job_public(job, request, svc)
    return JSONResponse(status_code=202 if created else 200, content=public.model_dump(mode="json"),
                        headers={"Location": f"/v1/songs/{job.id}"})


@router.get("", response_model=SongJobList)
async def list_songs(
    request: Request,
    svc: Svc,
    owner: Owner,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 20,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page.")] = None,
) -> SongJobList:
    """Your jobs, newest first."""
    jobs, next_cursor = await off_loop(svc.jobs.list, owner, limit=limit, before=cursor)
    return SongJobList(items=[await job_public(j, request, svc) for j in jobs], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=SongJobPublic)
async def get_song(job_id: JobId, request: Request, svc: Svc, owner: Owner) -> SongJobPublic:
    """Status, stage, progress, queue position, the result with fresh links, or the error."""
    job = await off_loop(svc.jobs.get, job_id, owner)
    if job is None:
        raise JobNotFound()
    return await job_public(job, request, svc)


@router.post("/{job_id}/cancel", response_model=SongJobPublic)
async def cancel_song(job_id: JobId, request: Request, svc: Svc, owner: Owner) -> SongJobPublic:
    """A queued job is cancelled at once; a running one stops at its next diffusion step."""
    job = await off_loop(svc.jobs.request_cancel, job_id, owner)
    if job is None:
        raise JobNotFound()
    svc.runner.cancel_local(job_id)
    svc.webhooks.wake()
    return await job_public(job, request, svc)
