"""The service itself: readiness and token checks."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from serve_app.api.deps import Owner, Services, Svc
from serve_app.api.schemas import AuthStatus, DeploymentHealth, Health
from serve_app.auth import bearer_from_header
from serve_app.redact import redact

router = APIRouter(tags=["service"])

SERVICE_WIDE = ("jobs",)  # probes whose detail is about every tenant (queue counts): admins only


async def _caller(request: Request, svc: Services) -> Any | None:
    """Who sent a valid token, checked by the verifier the authenticated routes use; None for no
    token, a wrong one, or one the verifier refuses (the public answer, never a 401: /health
    serves load balancers). A caller without `admin` (before API keys) is an environment token."""
    values = request.headers.getlist("authorization")
    token = bearer_from_header(values[0]) if len(values) == 1 else None
    if not token:
        return None
    try:
        auth = getattr(svc, "auth", None)
        if auth is not None:
            return await auth.resolve(token)
        return True if svc.tokens.verify(token) else None
    except Exception:  # noqa: BLE001 - a revoked key, a store outage: the public answer
        return None


@router.get("/health", response_model=Health)
async def health(request: Request, svc: Svc) -> JSONResponse:
    """Readiness: `ok` (200) or `degraded` (503) without a token. With a valid token, also each
    deployment's readiness and detail (no paths); the job queue's counts for admin tokens only."""

    async def probe(name: str, fn) -> tuple[str, DeploymentHealth]:
        try:
            detail = await asyncio.wait_for(fn(), timeout=svc.health_timeout_s)
            return name, DeploymentHealth(ready=True, detail=redact(str(detail or "")))
        except Exception as exc:  # noqa: BLE001
            return name, DeploymentHealth(ready=False, detail=type(exc).__name__)

    results = dict(await asyncio.gather(*(probe(n, f) for n, f in svc.probes.items())))
    ok = all(h.ready for h in results.values())
    status, code = ("ok", 200) if ok else ("degraded", 503)
    caller = await _caller(request, svc)
    if caller is None:
        return JSONResponse(status_code=code, content={"status": status})
    if not getattr(caller, "admin", True):
        for name in SERVICE_WIDE:
            if name in results and results[name].ready:
                results[name] = DeploymentHealth(ready=True, detail="")
    body = Health(status=status, deployments=results)
    return JSONResponse(status_code=code, content=body.model_dump())


@router.post("/auth-status", response_model=AuthStatus)
async def auth_status(_: Owner) -> AuthStatus:
    """Check a bearer token."""
    return AuthStatus(authenticated=True, message="token accepted")
