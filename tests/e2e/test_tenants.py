"""API keys on the dev stack (real Ray Serve, the kits, the embedded SQLite job database): a key
made with `python -m serve_app.keys`, used for a song and GET /v1/usage, then revoked with the
same command and refused (401) by the running ingress within the key cache's TTL, no redeploy."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.serve

ROOT = Path(__file__).resolve().parents[2]
KEY_CACHE_TTL_S = 3.0  # jobs.keys.cache_ttl_s's default


def keys_cli(song_api, *argv: str) -> dict:
    url = f"sqlite:///{song_api['storage_dir']}/jobs.db"  # the stack's jobs.sqlite_path
    r = subprocess.run([sys.executable, "-m", "serve_app.keys", "--database-url", url, "--json", *argv],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_a_key_from_the_cli_works_then_is_refused_within_the_ttl_once_revoked(song_api):
    key = keys_cli(song_api, "create", "--name", "e2e-tenant", "--quota", "songs_per_day=5")
    headers = {"Authorization": f"Bearer {key['secret']}"}
    with httpx.Client(base_url=song_api["base_url"], headers=headers, timeout=60) as c:
        usage = c.get("/v1/usage").json()
        assert usage["caller"] == "api_key" and usage["key_id"] == key["id"]
        assert usage["songs_per_day"] == {"used": 0, "limit": 5}
        r = c.post("/v1/songs", json={"prompt": "lofi, piano", "lyrics": "[verse]\nrain", "audio_duration": 10,
                                      "infer_step": 2, "seed": 3})
        assert r.status_code == 202, r.text
        song = r.json()["id"]
        deadline = time.monotonic() + 240
        while (job := c.get(f"/v1/songs/{song}").json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, job
            time.sleep(0.5)
        assert job["status"] == "succeeded", job
        assert c.get("/v1/usage").json()["songs_per_day"]["used"] == 1
        # The admin token does not see the key's song (another owner).
        other = c.get(f"/v1/songs/{song}", headers={"Authorization": f"Bearer {song_api['token']}"})
        assert other.status_code == 404

        keys_cli(song_api, "revoke", key["id"])
        revoked_at = time.monotonic()
        while (code := c.post("/auth-status").status_code) == 200:
            assert time.monotonic() - revoked_at < KEY_CACHE_TTL_S + 1.5, "still accepted past the TTL"
            time.sleep(0.2)
        assert code == 401
        assert c.get(f"/v1/songs/{song}").status_code == 401
    listed = keys_cli(song_api, "list")
    assert [k["revoked_at"] is not None for k in listed if k["id"] == key["id"]] == [True]
    assert all("secret" not in k for k in listed)
