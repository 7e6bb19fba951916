"""Shared fixtures of the hostile-input tests: an authenticated client and one stored song."""

from __future__ import annotations

import time

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
