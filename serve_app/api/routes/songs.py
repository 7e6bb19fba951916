"""Song jobs: submit, list (filtered), read, cancel, delete, and a song's edits."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from serve_app.api.deps import IdempotencyKey, JobId, Owner, Svc, off_loop
from serve_app.api.errors import JobNotFound
from serve_app.api.schemas import SongCreate, SongJobList, SongJobPublic
from serve_app.api.submit import submit
from serve_app.api.views import accepted, job_public
from serve_app.songs import layout
from serve_app.vocabulary import JobStatus, SongModeName

router = APIRouter(prefix="/v1/songs", tags=["songs"])


@router.post("", response_model=SongJobPublic, status_code=202)
async def create_song(
    body: SongCreate,
    request: Request,
    svc: Svc,
    owner: Owner,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Queue a song; answers 202 at once with the job and its Location."""
    job, created = await submit(svc, owner, body.mode, body.song_request(),
                                idempotency_key=idempotency_key, webhook_url=body.webhook_url)
    return await accepted(job, created, request, svc)


@router.get("", response_model=SongJobList)
async def list_songs(
    request: Request,
    svc: Svc,
    owner: Owner,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 20,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page.")] = None,
    status: Annotated[list[JobStatus] | None, Query(description="Only these statuses (repeat the parameter).")] = None,
    mode: Annotated[list[SongModeName] | None,
                    Query(description="Only these kinds: description, lyrics, described_lyrics, or an edit task.")] = None,
) -> SongJobList:
    """Your songs, newest first (deleted ones never)."""
    jobs, next_cursor = await off_loop(svc.jobs.list, owner, limit=limit, before=cursor, statuses=status or (),
                                       modes=mode or ())
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


@router.delete("/{job_id}", status_code=204, operation_id="delete_song")
async def delete_song(job_id: JobId, svc: Svc, owner: Owner) -> Response:
    """Remove the song's objects and its record. A queued or running song is cancelled first.
    Deleting again answers 204 too; another token's song is a 404. Edits made from it stay."""
    job = await off_loop(svc.jobs.mark_deleted, job_id, owner)
    if job is None:
        raise JobNotFound()
    svc.runner.cancel_local(job_id)
    svc.webhooks.wake()
    await svc.store.delete_prefix(layout.song_folder(svc.key_prefix, job_id))
    return Response(status_code=204)


@router.get("/{job_id}/edits", response_model=SongJobList, operation_id="list_song_edits")
async def list_edits(
    job_id: JobId,
    request: Request,
    svc: Svc,
    owner: Owner,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> SongJobList:
    """The songs made from this one (covers, repaints, extensions, ...), newest first."""
    if await off_loop(svc.jobs.get, job_id, owner) is None:
        raise JobNotFound()
    jobs, next_cursor = await off_loop(svc.jobs.list, owner, limit=limit, before=cursor, parent_id=job_id)
    return SongJobList(items=[await job_public(j, request, svc) for j in jobs], next_cursor=next_cursor)
