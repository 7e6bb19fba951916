"""The HTTP API (FastAPI), built per ingress replica around that replica's services.

Every song is a durable job. `/v1/songs` is the asynchronous API (submit, poll, stream events,
cancel, webhooks); the seed's `POST /generate-*` endpoints create a job and wait for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve_app.auth import TokenDigests, bearer_from_header, digest
from serve_app.jobs import IdempotencyConflict, InvalidCursor, Job, JobStore, QueueFull, StoreUnavailable
from serve_app.limits import install_guards
from serve_app.netguard import check_webhook_url
from serve_app.runner import JobRunner
from serve_app.schemas import (
    AuthStatus,
    DeploymentHealth,
    GenerateFromDescription,
    GenerateWithDescribedLyrics,
    GenerateWithLyrics,
    Health,
    SongCreate,
    SongJobList,
    SongJobPublic,
    SongPublic,
)

logger = logging.getLogger("ray.serve")

AUTH_HEADERS = {"WWW-Authenticate": "Bearer"}
SSE_POLL_S = 0.25
SSE_KEEPALIVE_S = 15.0
SEED_MODES = {GenerateFromDescription: "description", GenerateWithLyrics: "lyrics",
              GenerateWithDescribedLyrics: "described_lyrics"}


@dataclass
class Services:
    """What the routes need, created once per ingress replica."""

    store: Any  # the object store (audio, covers, manifests)
    jobs: JobStore
    runner: JobRunner
    webhooks: Any
    tokens: TokenDigests
    probes: dict[str, Any]  # name -> zero-arg coroutine function raising when not ready
    url_ttl_s: int
    song_timeout_s: float
    health_timeout_s: float
    allow_private_webhooks: bool
    max_body_bytes: int
    rate_limit: Any  # RateLimitArgs


def services(request: Request) -> Services:
    return request.app.state.services


Svc = Annotated[Services, Depends(services)]


def require_owner(request: Request, svc: Svc) -> str:
    """The caller's identity: the SHA-256 of their token (jobs store this, never the token)."""
    token = bearer_from_header(request.headers.get("authorization"))
    if not svc.tokens.verify(token):
        raise HTTPException(status_code=401, detail="missing or invalid bearer token", headers=AUTH_HEADERS)
    return digest(token).hex()


Owner = Annotated[str, Depends(require_owner)]
JobId = Annotated[str, Path(min_length=32, max_length=32, pattern="^[0-9a-f]{32}$", description="Job id.")]


def _absolute(url: str, request: Request) -> str:
    return str(request.base_url).rstrip("/") + url if url.startswith("/") else url


def _song_public(result: dict, request: Request, svc: Services) -> SongPublic:
    """A stored result plus fresh, short-lived links."""
    song = dict(result)
    song["audio_url"] = _absolute(svc.store.signed_url(song["r2_key"], svc.url_ttl_s), request)
    song["cover_image_url"] = _absolute(svc.store.signed_url(song["cover_image_r2_key"], svc.url_ttl_s), request)
    song["links_expire_in_s"] = svc.url_ttl_s
    return SongPublic.model_validate(song)


async def _job_public(job: Job, request: Request, svc: Services) -> SongJobPublic:
    data = job.public()
    if job.result:
        data["result"] = _song_public(job.result, request, svc)
    if job.status == "queued":
        data["queue_position"] = await asyncio.to_thread(svc.jobs.queue_position, job.id)
    return SongJobPublic.model_validate(data)


async def _store_call(fn, *args, **kwargs):
    """Job-store calls off the event loop; an unreachable database is a 503, never a 500."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except StoreUnavailable as exc:
        raise HTTPException(status_code=503, detail=f"job store unavailable: {exc}",
                            headers={"Retry-After": "5"}) from None


async def _submit(svc: Services, owner: str, mode: str, request: dict, *, idempotency_key: str | None = None,
                  webhook_url: str | None = None) -> tuple[Job, bool]:
    if webhook_url:
        try:
            await check_webhook_url(webhook_url, allow_private=svc.allow_private_webhooks)
        except (ValueError, PermissionError) as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
    try:
        job, created = await _store_call(svc.jobs.create, owner, mode, request,
                                         idempotency_key=idempotency_key, webhook_url=webhook_url)
    except QueueFull as exc:
        raise HTTPException(status_code=429, detail=f"too many songs queued; retry in {exc.retry_after_s} s",
                            headers={"Retry-After": str(exc.retry_after_s)}) from None
    except IdempotencyConflict:
        raise HTTPException(status_code=409, detail="this Idempotency-Key was already used with another body") from None
    if created:
        svc.runner.wake()
    return job, created


async def _make_song(body, request: Request, svc: Services, owner: str) -> SongPublic:
    """The seed's synchronous contract over a job: a dropped connection leaves the job running."""
    job, _ = await _submit(svc, owner, SEED_MODES[type(body)], body.model_dump())
    try:
        job = await svc.runner.wait(job.id, svc.song_timeout_s)
    except asyncio.TimeoutError:
        raise HTTPException(status_code=504, detail=f"song {job.id} is still running after "
                            f"{svc.song_timeout_s:g} s; follow it at /v1/songs/{job.id}") from None
    except StoreUnavailable as exc:
        raise HTTPException(status_code=503, detail=f"job store unavailable: {exc}") from None
    if job.status == "succeeded":
        return _song_public(job.result, request, svc)
    if job.status == "cancelled":
        raise HTTPException(status_code=409, detail=f"song {job.id} was cancelled")
    raise HTTPException(status_code=502, detail=job.error or "song failed")


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def _sse(event) -> str:
    return f"id: {event.seq}\nevent: {event.type}\ndata: {json.dumps(event.public(), separators=(',', ':'))}\n\n"


def create_api(svc: Services) -> FastAPI:
    api = FastAPI(
        title="Songsmith music generation API",
        version="0.2.0",
        description="Describe a song (or give tags and lyrics); get audio, cover art, title and categories. "
        "All endpoints except /health need `Authorization: Bearer <token>`.",
    )
    api.state.services = svc
    install_guards(api, max_body_bytes=svc.max_body_bytes, rate_limit=svc.rate_limit, tokens=svc.tokens)

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k not in ("input", "ctx")} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": errors, "message": _validation_message(exc)})

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Every error body has the ErrorBody shape (`detail` and `message`), e.g. the 422 of a
        refused webhook_url, the 401s and the router's own 404/405."""
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail, "message": message},
                            headers=exc.headers)

    @api.get("/health", response_model=Health, tags=["service"])
    async def health(svc: Svc) -> JSONResponse:
        """Readiness of every deployment, of storage and of the job store (no auth)."""

        async def probe(name: str, fn) -> tuple[str, DeploymentHealth]:
            try:
                detail = await asyncio.wait_for(fn(), timeout=svc.health_timeout_s)
                return name, DeploymentHealth(ready=True, detail=str(detail or ""))
            except Exception as exc:  # noqa: BLE001
                return name, DeploymentHealth(ready=False, detail=type(exc).__name__)

        results = dict(await asyncio.gather(*(probe(n, f) for n, f in svc.probes.items())))
        ok = all(h.ready for h in results.values())
        body = Health(status="ok" if ok else "degraded", deployments=results)
        return JSONResponse(status_code=200 if ok else 503, content=body.model_dump())

    @api.post("/auth-status", response_model=AuthStatus, tags=["service"])
    async def auth_status(_: Owner) -> AuthStatus:
        """Check a bearer token."""
        return AuthStatus(authenticated=True, message="token accepted")

    # -- the seed's synchronous endpoints --

    @api.post("/generate-from-description", response_model=SongPublic, tags=["songs (synchronous)"])
    async def generate_from_description(body: GenerateFromDescription, request: Request, svc: Svc, owner: Owner):
        """The LLM writes tags, lyrics, title and categories from your description; waits for the song."""
        return await _make_song(body, request, svc, owner)

    @api.post("/generate-with-lyrics", response_model=SongPublic, tags=["songs (synchronous)"])
    async def generate_with_lyrics(body: GenerateWithLyrics, request: Request, svc: Svc, owner: Owner):
        """Your tags and lyrics, sung as written; waits for the song."""
        return await _make_song(body, request, svc, owner)

    @api.post("/generate-with-described-lyrics", response_model=SongPublic, tags=["songs (synchronous)"])
    async def generate_with_described_lyrics(
        body: GenerateWithDescribedLyrics, request: Request, svc: Svc, owner: Owner
    ):
        """Your tags; the LLM writes lyrics about what you describe; waits for the song."""
        return await _make_song(body, request, svc, owner)

    # -- asynchronous jobs --

    @api.post("/v1/songs", response_model=SongJobPublic, status_code=202, tags=["songs"])
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
        job, created = await _submit(svc, owner, body.mode, body.song_request(),
                                     idempotency_key=idempotency_key, webhook_url=body.webhook_url)
        public = await _job_public(job, request, svc)
        return JSONResponse(status_code=202 if created else 200, content=public.model_dump(mode="json"),
                            headers={"Location": f"/v1/songs/{job.id}"})

    @api.get("/v1/songs", response_model=SongJobList, tags=["songs"])
    async def list_songs(
        request: Request,
        svc: Svc,
        owner: Owner,
        limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 20,
        cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page.")] = None,
    ) -> SongJobList:
        """Your jobs, newest first."""
        try:
            jobs, next_cursor = await _store_call(svc.jobs.list, owner, limit=limit, before=cursor)
        except InvalidCursor:
            raise HTTPException(status_code=400, detail="invalid cursor") from None
        items = [await _job_public(j, request, svc) for j in jobs]
        return SongJobList(items=items, next_cursor=next_cursor)

    @api.get("/v1/songs/{job_id}", response_model=SongJobPublic, tags=["songs"])
    async def get_song(job_id: JobId, request: Request, svc: Svc, owner: Owner) -> SongJobPublic:
        """Status, stage, progress, queue position, the result with fresh links, or the error."""
        job = await _store_call(svc.jobs.get, job_id, owner)
        if job is None:
            raise HTTPException(status_code=404, detail="no such song job")
        return await _job_public(job, request, svc)

    @api.post("/v1/songs/{job_id}/cancel", response_model=SongJobPublic, tags=["songs"])
    async def cancel_song(job_id: JobId, request: Request, svc: Svc, owner: Owner) -> SongJobPublic:
        """A queued job is cancelled at once; a running one stops at its next diffusion step."""
        job = await _store_call(svc.jobs.request_cancel, job_id, owner)
        if job is None:
            raise HTTPException(status_code=404, detail="no such song job")
        svc.runner.cancel_local(job_id)
        svc.webhooks.wake()
        return await _job_public(job, request, svc)

    @api.get("/v1/songs/{job_id}/events", tags=["songs"], response_class=StreamingResponse,
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
        job = await _store_call(svc.jobs.get, job_id, owner)
        if job is None:
            raise HTTPException(status_code=404, detail="no such song job")
        start = last_event_id if last_event_id is not None else (after or 0)

        async def stream():
            seq, idle = start, 0.0
            while True:
                try:
                    events = await asyncio.to_thread(svc.jobs.events, job_id, seq)
                except StoreUnavailable:
                    events = []
                for ev in events:
                    seq = ev.seq
                    yield _sse(ev)
                    if ev.type == "status" and ev.data.get("status") in ("succeeded", "failed", "cancelled"):
                        return
                if events:
                    idle = 0.0
                    continue
                if await request.is_disconnected():
                    return
                await asyncio.sleep(SSE_POLL_S)
                idle += SSE_POLL_S
                if idle >= SSE_KEEPALIVE_S:
                    idle = 0.0
                    yield ": keep-alive\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # -- files of the local storage backend --

    @api.get("/files/{key:path}", tags=["files"])
    async def download(
        key: str,
        svc: Svc,
        expires: Annotated[int, Query(description="Link expiry (unix seconds).")],
        sig: Annotated[str, Query(min_length=1, max_length=128, description="Link signature.")],
    ) -> FileResponse:
        """Signed, expiring download links of the local storage backend (the S3 backend presigns)."""
        from serve_app.storage import LinkExpired, LinkInvalid, ObjectNotFound

        verify = getattr(svc.store, "verify", None)
        if verify is None:
            raise HTTPException(status_code=404, detail="this storage backend serves its own links")
        try:
            path = verify(key, expires, sig)
        except LinkExpired:
            raise HTTPException(status_code=403, detail="link expired") from None
        except (LinkInvalid, ValueError):
            raise HTTPException(status_code=403, detail="invalid link signature") from None
        except ObjectNotFound:
            raise HTTPException(status_code=404, detail="no such object") from None
        return FileResponse(path, media_type=svc.store.content_type(key))

    return api
