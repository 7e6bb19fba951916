"""/health and /auth-status."""

from __future__ import annotations

from serve_app.storage import StorageError
from tests.unit.serve_app.api.conftest import AUTH


async def test_health_is_ok_without_a_token_when_everything_is_ready(client):
    r = await client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}  # details need a token (test_holes_leaks)
    r = await client.get("/health", headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert set(body["deployments"]) == {"llm", "music", "cover", "storage", "jobs"}
    assert body["deployments"]["jobs"] == {"ready": True, "detail": "queued=0 running=0"}


async def test_health_is_degraded_and_503_when_a_model_or_storage_is_down(client, stack):
    stack.models.ready_error = RuntimeError("replica died")
    stack.store.unreachable = StorageError("cannot reach S3 endpoint", code="unreachable")
    r = await client.get("/health", headers=AUTH)
    assert r.status_code == 503 and r.json()["status"] == "degraded"
    deps = r.json()["deployments"]
    assert deps["music"] == {"ready": False, "detail": "RuntimeError"}  # the type, never the message
    assert deps["storage"] == {"ready": False, "detail": "StorageError"} and deps["jobs"]["ready"]


async def test_auth_status_accepts_a_configured_token(client):
    r = await client.post("/auth-status", headers=AUTH)
    assert r.status_code == 200 and r.json() == {"authenticated": True, "message": "token accepted"}


async def test_auth_status_refuses_missing_malformed_and_unknown_tokens(client):
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer not-a-real-token-at-all"}):
        r = await client.post("/auth-status", headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json() == {"detail": "missing or invalid bearer token", "message": "missing or invalid bearer token"}
