"""The HTTP API (FastAPI), built per ingress replica around that replica's services."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse

from serve_app.auth import TokenDigests, bearer_from_header
from serve_app.composer import SongBody, SongComposer, SongFailed
from serve_app.schemas import (
    AuthStatus,
    DeploymentHealth,
    GenerateFromDescription,
    GenerateWithDescribedLyrics,
    GenerateWithLyrics,
    Health,
    SongPublic,
)

logger = logging.getLogger("ray.serve")

AUTH_HEADERS = {"WWW-Authenticate": "Bearer"}


@dataclass
class Services:
    """What the routes need, created once per ingress replica."""

    composer: SongComposer
    store: Any
    tokens: TokenDigests
    probes: dict[str, Any]  # name -> zero-arg coroutine function raising when not ready
    url_ttl_s: int
    song_timeout_s: float
    health_timeout_s: float


def services(request: Request) -> Services:
    return request.app.state.services


Svc = Annotated[Services, Depends(services)]


def require_token(request: Request, svc: Svc) -> None:
    if not svc.tokens.verify(bearer_from_header(request.headers.get("authorization"))):
        raise HTTPException(status_code=401, detail="missing or invalid bearer token", headers=AUTH_HEADERS)


Authed = Annotated[None, Depends(require_token)]


def _absolute(url: str, request: Request) -> str:
    return str(request.base_url).rstrip("/") + url if url.startswith("/") else url


async def _make_song(body: SongBody, request: Request, svc: Services) -> SongPublic:
    try:
        # shield: a dropped client connection must not abort a song half-way through its uploads.
        result = await asyncio.wait_for(asyncio.shield(svc.composer.compose(body)), timeout=svc.song_timeout_s)
    except asyncio.TimeoutError:
        raise HTTPException(status_code=504, detail=f"song took longer than {svc.song_timeout_s:g} s") from None
    except SongFailed as exc:
        logger.error("song failed: %s", exc)
        raise HTTPException(status_code=502, detail=str(exc)) from None
    result["audio_url"] = _absolute(svc.store.signed_url(result["r2_key"], svc.url_ttl_s), request)
    result["cover_image_url"] = _absolute(svc.store.signed_url(result["cover_image_r2_key"], svc.url_ttl_s), request)
    result["links_expire_in_s"] = svc.url_ttl_s
    return SongPublic.model_validate(result)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def create_api(svc: Services) -> FastAPI:
    api = FastAPI(
        title="Songsmith music generation API",
        version="0.1.0",
        description="Describe a song (or give tags and lyrics); get audio, cover art, title and categories. "
        "All endpoints except /health need `Authorization: Bearer <token>`.",
    )
    api.state.services = svc

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k != "input" and k != "ctx"} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": errors, "message": _validation_message(exc)})

    @api.get("/health", response_model=Health, tags=["service"])
    async def health(svc: Svc) -> JSONResponse:
        """Readiness of every deployment and of storage (no auth)."""

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
    async def auth_status(_: Authed) -> AuthStatus:
        """Check a bearer token."""
        return AuthStatus(authenticated=True, message="token accepted")

    @api.post("/generate-from-description", response_model=SongPublic, tags=["songs"])
    async def generate_from_description(body: GenerateFromDescription, request: Request, svc: Svc, _: Authed):
        """The LLM writes tags, lyrics, title and categories from your description."""
        return await _make_song(body, request, svc)

    @api.post("/generate-with-lyrics", response_model=SongPublic, tags=["songs"])
    async def generate_with_lyrics(body: GenerateWithLyrics, request: Request, svc: Svc, _: Authed):
        """Your tags and lyrics, sung as written."""
        return await _make_song(body, request, svc)

    @api.post("/generate-with-described-lyrics", response_model=SongPublic, tags=["songs"])
    async def generate_with_described_lyrics(
        body: GenerateWithDescribedLyrics, request: Request, svc: Svc, _: Authed
    ):
        """Your tags; the LLM writes lyrics about what you describe."""
        return await _make_song(body, request, svc)

    @api.get("/files/{key:path}", tags=["files"], include_in_schema=True)
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
