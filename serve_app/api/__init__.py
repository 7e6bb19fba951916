"""The HTTP API (FastAPI), built per ingress replica around that replica's services.

Every song is a durable job. `/v1/songs` is the asynchronous API (submit, poll, stream events,
cancel, webhooks); the seed's `POST /generate-*` endpoints create a job and wait for it.

    routes/service.py   /health, /auth-status
    routes/generate.py  the seed's /generate-* endpoints
    routes/songs.py     /v1/songs: submit, list, read, cancel, delete, a song's edits
    routes/edits.py     /v1/edits: cover, repaint, extend, ... of a song or an upload
    routes/uploads.py   /v1/uploads: audio files to edit
    routes/events.py    /v1/songs/{id}/events (SSE)
    routes/usage.py     /v1/usage: the caller's quotas and counters
    routes/files.py     /files: local storage's signed links (mounted only for that backend)
    deps.py             Services and the typed dependencies; errors.py the one error map;
    guards.py           body size and rate limit, in front of FastAPI; schemas.py the bodies
"""

from __future__ import annotations

from fastapi import FastAPI

from serve_app.api import errors
from serve_app.api.deps import Services
from serve_app.api.guards import install_guards
from serve_app.api.routes import capabilities, edits, events, files, generate, service, songs, studio, uploads, usage

API_VERSION = "0.2.0"


def create_api(svc: Services) -> FastAPI:
    api = FastAPI(
        title="Songsmith music generation API",
        version=API_VERSION,
        # Operation ids are the route functions' names (`create_song`, `get_song`, ...): stable
        # across FastAPI versions and readable as generated SDK method names.
        generate_unique_id_function=lambda route: route.name,
        description="Describe a song (or give tags and lyrics); get audio, cover art, title and categories. "
        "All endpoints except /health need `Authorization: Bearer <token>`.",
    )
    api.state.services = svc
    install_guards(api, max_body_bytes=svc.max_body_bytes, rate_limit=svc.rate_limit, tokens=svc.tokens,
                   upload_max_bytes=svc.max_upload_bytes)
    errors.install(api)
    for router in (service.router, generate.router, songs.router, edits.router, uploads.router, events.router,
                   studio.router, usage.router, capabilities.router):
        api.include_router(router)
    if svc.links is not None:
        api.include_router(files.router)
    return api


__all__ = ["Services", "create_api"]
