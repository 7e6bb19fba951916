"""What the routes depend on: the replica's services, the caller's identity, typed path params."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Path, Request
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve_app.api import errors
from serve_app.api.errors import Unauthorized
from serve_app.api.guards import OneAuthorization
from serve_app.args import RateLimitArgs
from serve_app.auth import Authenticator, Caller, TokenDigests, bearer_from_header
from serve_app.jobs.keystore import KeyRevoked, QuotaExceeded
from serve_app.jobs.runner import JobRunner
from serve_app.jobs.store import JobStore
from serve_app.jobs.webhooks import WebhookSender
from serve_app.storage import ObjectStore, SignedLinks

T = TypeVar("T")
Probe = Callable[[], Awaitable[Any]]


@dataclass
class Services:
    """What the routes need, created once per ingress replica (tests build one from fakes)."""

    store: ObjectStore  # audio, covers, manifests
    jobs: JobStore
    runner: JobRunner
    webhooks: WebhookSender
    tokens: TokenDigests
    probes: dict[str, Probe]  # name -> zero-arg coroutine function raising when not ready
    url_guard: Callable[[str], Awaitable[None]]  # raises ValueError/PermissionError for a refused webhook_url
    url_ttl_s: int
    song_timeout_s: float
    health_timeout_s: float
    max_body_bytes: int
    rate_limit: RateLimitArgs | None
    links: SignedLinks | None = None  # set when this service serves its storage's links (/files)
    music_capabilities: Callable[[], Awaitable[Any]] | None = None  # -> MusicCapabilities (edits check it)
    max_upload_bytes: int = 100 * 1024 * 1024  # POST /v1/uploads bodies (others: max_body_bytes)
    max_upload_s: float = 600.0  # longest upload accepted (ACE-Step's longest song)
    key_prefix: str = "songs"  # where songs live in storage (storage.key_prefix)
    auth: Authenticator | None = None  # tokens + API keys (built from `tokens` and `jobs.keys` when None)

    def __post_init__(self) -> None:
        if self.auth is None:
            self.auth = Authenticator(self.tokens, getattr(self.jobs, "keys", None))


def services(request: Request) -> Services:
    return request.app.state.services


Svc = Annotated[Services, Depends(services)]


async def require_caller(request: Request, svc: Svc) -> Caller:
    """Who is calling: an admin token from the environment or an API key from the job database."""
    values = request.headers.getlist("authorization")
    if len(values) > 1:  # the guards answer this first; kept here for apps without them
        raise StarletteHTTPException(400, OneAuthorization.MESSAGE)
    caller = await svc.auth.resolve(bearer_from_header(values[0] if values else None))
    if caller is None:
        raise Unauthorized()
    return caller


def require_owner(caller: Annotated[Caller, Depends(require_caller)]) -> str:
    """The caller's identity: an admin token's digest, or an API key's id-based owner digest
    (jobs store this, never a secret)."""
    return caller.owner


CallerDep = Annotated[Caller, Depends(require_caller)]
Owner = Annotated[str, Depends(require_owner)]
JobId = Annotated[str, Path(min_length=32, max_length=32, pattern="^[0-9a-f]{32}$", description="Job id.")]


# The job store's tenant errors, in the one error map (registered before create_api installs it).
errors.ERRORS.setdefault(QuotaExceeded, errors.Rule(429, headers=lambda e: {"Retry-After": str(e.retry_after_s)}))
errors.ERRORS.setdefault(KeyRevoked, errors.Rule(401, lambda _: str(Unauthorized()),
                                                 lambda _: {"WWW-Authenticate": "Bearer"}))


async def off_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Job-store calls are blocking: run them on a thread so the event loop keeps serving."""
    return await asyncio.to_thread(fn, *args, **kwargs)

IdempotencyKey = Annotated[
    str | None, Header(min_length=1, max_length=200, description="Same key and body: same job; other body: 409.")
]
