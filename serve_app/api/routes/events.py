"""A job's event stream (Server-Sent Events), resumable with Last-Event-ID."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from serve_app.api.deps import JobId, Owner, Svc, off_loop
from serve_app.api.errors import JobNotFound
from serve_app.jobs.errors import StoreUnavailable
from serve_app.jobs.records import Event
from serve_app.vocabulary import TERMINAL_STATUSES

router = APIRouter(prefix="/v1/songs", tags=["songs"])

POLL_S = 0.25
KEEPALIVE_S = 15.0


def sse(event: Event) -> str:
    return f"id: {event.seq}\nevent: {event.type}\ndata: {json.dumps(event.public(), separators=(',', ':'))}\n\n"


def is_end(event: Event) -> bool:
    return event.type == "status" and event.data.get("status") in TERMINAL_STATUSES


@router.get("/{job_id}/events", response_class=StreamingResponse, operation_id="stream_song_events",
            responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}})
async def song_events(
    job_id: JobId,
    request: Request,
    svc: Svc,
    owner: Owner,
    last_event_id: Annotated[int | None, Header(ge=0, description="Resume after this event id.")] = None,
    after: Annotated[int | None, Query(ge=0, description="Resume after this event id (query form).")] = None,
) -> StreamingResponse:
    """Every status, stage and progress change as SSE (`id:` is the event's seq), ending with the
    terminal status; reconnect with `Last-Event-ID` to miss nothing."""
    if await off_loop(svc.jobs.get, job_id, owner) is None:
        raise JobNotFound()
    start = last_event_id if last_event_id is not None else (after or 0)

    async def stream():
        seq, idle = start, 0.0
        while True:
            try:
                events = await off_loop(svc.jobs.events, job_id, seq)
            except StoreUnavailable:
                events = []  # the database is back soon; the client keeps its place
            for ev in events:
                seq = ev.seq
                yield sse(ev)
                if is_end(ev):
                    return
            if events:
                idle = 0.0
                continue
            if await request.is_disconnected():
                return
            await asyncio.sleep(POLL_S)
            idle += POLL_S
            if idle >= KEEPALIVE_S:
                idle = 0.0
                yield ": keep-alive\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
