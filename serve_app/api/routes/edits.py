"""Edits: a new song made from one of yours (or an upload) by one of ACE-Step's tasks.

Everything that can be checked before the song is queued is checked here, so a bad edit costs no
GPU time: the source exists, is yours and is finished; the task is one the configured checkpoint
can do; a repaint range lies inside the source; an extend stays within 600 s.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from deployments.protocol import BASE_ONLY_TASKS, MusicCapabilities
from serve_app.api.deps import IdempotencyKey, Owner, Services, Svc, off_loop
from serve_app.api.errors import FieldInvalid, SourceNotFound, SourceNotReady
from serve_app.api.schemas import MAX_DURATION_S, EditCreate, SongJobPublic
from serve_app.api.submit import submit
from serve_app.api.views import accepted
from serve_app.songs.sources import get_upload, song_source, upload_source
from serve_app.vocabulary import SongMode

router = APIRouter(prefix="/v1/edits", tags=["edits"])
RANGE_SLACK_S = 0.05  # a range end a rounding error past the source's end is its end


async def capabilities(svc: Services) -> MusicCapabilities | None:
    if svc.music_capabilities is None:
        return None
    return await svc.music_capabilities()


def why_unavailable(caps: MusicCapabilities | None, task: str) -> str:
    """Why the music deployments cannot run `task`: a phrase that follows the task's name."""
    if caps is not None and task in BASE_ONLY_TASKS and caps.is_turbo:
        return ("needs a base (non-turbo) ACE-Step 1.5 checkpoint (configure music_base with one, e.g. "
                "ACE-Step/acestep-v15-xl-base-diffusers, or make music.engine.model one)")
    return (caps.unavailable.get(task) if caps is not None else None) or "is not supported by this server's music model"


async def resolve_source(svc: Services, owner: str, body: EditCreate) -> dict:
    src = body.source
    if src.song_id is not None:
        job = await off_loop(svc.jobs.get, src.song_id, owner)
        if job is None:
            raise SourceNotFound("song")
        if job.status != "succeeded":
            raise SourceNotReady(job.id, job.status)
        takes = job.result.get("takes") or [None]
        if src.take >= len(takes):
            raise FieldInvalid("source.take", f"song {job.id} has {len(takes)} take(s): 0 to {len(takes) - 1}")
        return song_source(job.result, job.id, src.take)
    record = await get_upload(svc.store, owner, src.upload_id)
    if record is None:
        raise SourceNotFound("upload")
    return upload_source(record)


def check_against_source(body: EditCreate, source: dict) -> None:
    length = source["duration_s"]
    if body.task == "repaint":
        if body.repaint_start_s >= length:
            raise FieldInvalid("repaint_start_s", f"must be less than the source's length, {length:.2f} s")
        if body.repaint_end_s > length + RANGE_SLACK_S:
            raise FieldInvalid("repaint_end_s", f"must be at most the source's length, {length:.2f} s "
                                                "(to add audio after the end, use task extend)")
    if body.task == "extend" and length + body.extend_s > MAX_DURATION_S:
        room = max(0.0, MAX_DURATION_S - length)
        raise FieldInvalid("extend_s", f"the source is {length:.2f} s and a song is at most {MAX_DURATION_S:g} s: "
                                       f"at most {room:.2f} s can be added")
    if "upload_id" in source and body.prompt is None and body.task != "extract":
        raise FieldInvalid("prompt", f"required for task {body.task!r} when the source is an upload (it has no tags)")


@router.post("", response_model=SongJobPublic, status_code=202, operation_id="create_edit")
async def create_edit(
    body: EditCreate,
    request: Request,
    svc: Svc,
    owner: Owner,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Queue an edit; answers 202 with the new song's job (its id is the new song's id)."""
    caps = await capabilities(svc)
    if caps is not None and body.task not in caps.tasks:
        raise FieldInvalid("task", f"{body.task!r} {why_unavailable(caps, body.task)}; this server's music model "
                                   f"does {', '.join(caps.tasks)}")
    source = await resolve_source(svc, owner, body)
    check_against_source(body, source)
    request_body = body.model_dump(exclude={"webhook_url", "source"}, exclude_none=True)
    request_body["source"] = {k: v for k, v in source.items() if k not in ("tags", "lyrics", "instrumental")}
    request_body["prompt"] = body.prompt if body.prompt is not None else source.get("tags", "")
    inherit_lyrics = body.lyrics is None
    request_body["lyrics"] = source.get("lyrics", "") if inherit_lyrics else body.lyrics
    request_body["instrumental"] = bool(source.get("instrumental")) and inherit_lyrics
    job, created = await submit(svc, owner, SongMode(body.task), request_body, idempotency_key=idempotency_key,
                                webhook_url=body.webhook_url, parent_id=source.get("song_id"))
    return await accepted(job, created, request, svc)
