"""Shared pieces of the hostile-input tests: an authenticated client, raw HTTP, one stored song."""

from __future__ import annotations

import http.client
import time
from urllib.parse import urlsplit

import httpx
import pytest

SHORT_SONG = {"prompt": "lofi, piano", "lyrics": "[verse]\nsoft rain", "audio_duration": 10.0, "infer_step": 1}


@pytest.fixture(scope="package")
def client(song_api):
    with httpx.Client(base_url=song_api["base_url"], timeout=120,
                      headers={"Authorization": f"Bearer {song_api['token']}"}) as c:
        yield c


@pytest.fixture(scope="package")
def stored_song(client) -> dict:
    """One finished song (audio, cover, manifest in storage) shared by the link and leak tests."""
    r = client.post("/v1/songs", json=SHORT_SONG)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        job = client.get(f"/v1/songs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            assert job["status"] == "succeeded", job
            return job
        time.sleep(0.2)
    raise AssertionError(f"song {job_id} did not finish")


def raw_request(base_url: str, method: str, target: str, headers: dict | None = None,
                body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """Send `target` byte for byte (no client-side normalisation of `..` or percent-escapes)."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()
