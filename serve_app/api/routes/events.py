"""A job's event stream (Server-Sent Events), resumable with Last-Event-ID.

Every stream ends: at the job's terminal status; at once (204, which tells an EventSource to stop
reconnecting) when a finished job has nothing after the resume id; when the job is over and the
resume id was past its last event; after `MAX_STREAM_S`, or `IDLE_LIMIT_S` without a new event
(with a `retry:` hint: the client reconnects with its Last-Event-ID and misses nothing); and on an
error, which is logged and told to the client as an `error` event before the stream closes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from serve_app.api.deps import JobId, Owner, Svc, off_loop
from serve_app.api.errors import JobNotFound
from serve_app.jobs.errors import StoreUnavailable
from serve_app.jobs.records import Event
from serve_app.redact import redact
from serve_app.vocabulary import TERMINAL_STATUSES

logger = logging.getLogger("ray.serve")

router = APIRouter(prefix="/v1/songs", tags=["songs"])

# Event ids are job_events.seq, a 32-bit INTEGER column (PostgreSQL int4): a larger resume id is
# not an id this server ever issued, and binding it would fail inside the database driver.
MAX_EVENT_ID = 2**31 - 1
POLL_S = 0.25
KEEPALIVE_S = 15.0
MAX_STREAM_S = 3600.0  # one connection's lifetime, however busy
IDLE_LIMIT_S = 900.0  # a stream with no new event for this long ends (the client reconnects)
JOB_CHECK_S = 1.0  # how often an idle stream re-reads its job (ended? deleted?)
RETRY_MS = 2000  # the reconnect delay suggested when the server ends a stream early

ERROR_MESSAGE = "the event stream failed; reconnect with Last-Event-ID to retry"


def sse(event: Event) -> str:
    return f"id: {event.seq}\nevent: {event.type}\ndata: {json.dumps(event.public(), separators=(',', ':'))}\n\n"


def sse_error(message: str) -> str:
    return f"event: error\ndata: {json.dumps({'message': message}, separators=(',', ':'))}\n\n"


def is_end(event: Event) -> bool:
    return event.type == "status" and event.data.get("status") in TERMINAL_STATUSES


@router.get("/{job_id}/events", response_class=StreamingResponse, operation_id="stream_song_events",
            responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"},
                       204: {"description": "The job is over and nothing came after the resume id: "
                                            "stop reconnecting."}})
async def song_events(
    job_id: JobId,
    request: Request,
    svc: Svc,
    owner: Owner,
    last_event_id: Annotated[int | None, Header(ge=0, le=MAX_EVENT_ID,
                                                description="Resume after this event id.")] = None,
    after: Annotated[int | None, Query(ge=0, le=MAX_EVENT_ID,
                                       description="Resume after this event id (query form).")] = None,
):
    """Every status, stage and progress change as SSE (`id:` is the event's seq), ending with the
    terminal status; reconnect with `Last-Event-ID` to miss nothing. A finished job with nothing
    after the resume id answers 204 (EventSource stops reconnecting)."""
    job = await off_loop(svc.jobs.get, job_id, owner)
    if job is None:
        raise JobNotFound()
    start = last_event_id if last_event_id is not None else (after or 0)
    if job.terminal and start >= job.last_event_seq:
        return Response(status_code=204, headers={"Cache-Control": "no-cache"})

    async def stream():
        loop = asyncio.get_running_loop()
        opened = last_new = last_check = loop.time()
        seq, since_keepalive, store_down = start, 0.0, False
        try:
            while True:
                try:
                    events = await off_loop(svc.jobs.events, job_id, seq)
                    store_down = False
                except StoreUnavailable as exc:  # the database is back soon; the client keeps its place
                    if not store_down:
                        logger.warning("event stream of job %s: %s", job_id, redact(str(exc)),
                                       extra={"job_id": job_id})
                    events, store_down = [], True
                for ev in events:
                    seq = ev.seq
                    yield sse(ev)
                    if is_end(ev):
                        return
                now = loop.time()
                if events:
                    last_new = now
                    if now - opened < MAX_STREAM_S:
                        continue
                if now - opened >= MAX_STREAM_S or now - last_new >= IDLE_LIMIT_S:
                    yield f"retry: {RETRY_MS}\n\n"  # reconnect (with Last-Event-ID) in a moment
                    return
                if now - last_check >= JOB_CHECK_S and not store_down:
                    last_check = now
                    current = await off_loop(svc.jobs.get, job_id, owner)
                    if current is None or (current.terminal and seq >= current.last_event_seq):
                        return  # deleted, or over with nothing after `seq` (a resume id past its end)
                if await request.is_disconnected():
                    return
                await asyncio.sleep(POLL_S)
                since_keepalive += POLL_S
                if since_keepalive >= KEEPALIVE_S:
                    since_keepalive = 0.0
                    yield ": keep-alive\n\n"
        except StoreUnavailable as exc:
            logger.warning("event stream of job %s ended: %s", job_id, redact(str(exc)), extra={"job_id": job_id})
            yield sse_error(ERROR_MESSAGE)
        except Exception:  # noqa: BLE001 - the status line went out long ago: say so, in the stream and the log
            logger.exception("event stream of job %s failed after event %d", job_id, seq, extra={"job_id": job_id})
            yield sse_error(ERROR_MESSAGE)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
