"""The service itself: readiness and token checks."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from serve_app.api.deps import Owner, Svc
from serve_app.api.schemas import AuthStatus, DeploymentHealth, Health

router = APIRouter(tags=["service"])


@router.get("/health", response_model=Health)
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


@router.post("/auth-status", response_model=AuthStatus)
async def auth_status(_: Owner) -> AuthStatus:
    """Check a bearer token."""
    return AuthStatus(authenticated=True, message="token accepted")
