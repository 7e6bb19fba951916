"""The seed's synchronous endpoints: a job each, answered when the song is done."""

from __future__ import annotations

import asyncio

import pytest

from tests.unit.serve_app.api.conftest import AUTH

BODIES = {
    "/generate-from-description": {"full_described_song": "a song about the sea", "audio_duration": 10},
    "/generate-with-lyrics": {"prompt": "lofi, piano", "lyrics": "[verse]\nrain", "audio_duration": 10},
    "/generate-with-described-lyrics": {"prompt": "rock", "described_lyrics": "a surfing dog", "audio_duration": 10},
}


@pytest.mark.parametrize("path", list(BODIES))
async def test_each_seed_endpoint_answers_the_seed_fields_and_fresh_links(client, path):
    r = await client.post(path, json=BODIES[path], headers=AUTH)
    assert r.status_code == 200, r.text
    song = r.json()
    assert song["r2_key"].endswith("/audio.wav") and song["cover_image_r2_key"].endswith("/cover.png")
    assert song["categories"] == ["Pop", "Electronic", "Test"] and song["duration_s"] == 10.0
    assert song["audio_url"] == f"https://storage.example/{song['r2_key']}?ttl=600"
    assert song["links_expire_in_s"] == 600 and "total" in song["timings"]


async def test_an_invalid_body_is_a_422_naming_the_field_and_the_range(client):
    r = await client.post("/generate-with-lyrics", json={"prompt": "x", "audio_duration": 5}, headers=AUTH)
    assert r.status_code == 422
    assert r.json()["message"] == "audio_duration: Input should be greater than or equal to 10"
    r = await client.post("/generate-from-description", json={"full_described_song": "x", "colour": 1},
                          headers=AUTH)
    assert r.status_code == 422 and "colour: Extra inputs are not permitted" in r.json()["message"]


async def test_a_failed_song_is_a_502_with_the_jobs_own_words(client, stack):
    stack.models.failures["music"] = RuntimeError("out of GPU memory")
    r = await client.post("/generate-with-lyrics", json=BODIES["/generate-with-lyrics"], headers=AUTH)
    assert r.status_code == 502
    assert r.json()["message"] == "music failed: RuntimeError: out of GPU memory"


async def test_a_song_cancelled_while_the_caller_waits_is_a_409(client, stack):
    gate = stack.models.gate("music:1")
    call = asyncio.ensure_future(client.post("/generate-with-lyrics", json=BODIES["/generate-with-lyrics"],
                                             headers=AUTH))
    await gate.reached.wait()
    [job_id] = stack.runner.running
    assert (await client.post(f"/v1/songs/{job_id}/cancel", headers=AUTH)).status_code == 200
    r = await call
    assert r.status_code == 409 and r.json()["message"] == f"song {job_id} was cancelled"


@pytest.fixture
def stack_options(request):
    return getattr(request, "param", {})


@pytest.mark.parametrize("stack_options", [{"song_timeout_s": 0.2}], indirect=True)
async def test_a_song_slower_than_the_timeout_is_a_504_and_keeps_running(client, stack):
    gate = stack.models.gate("music:1")
    r = await client.post("/generate-with-lyrics", json=BODIES["/generate-with-lyrics"], headers=AUTH)
    assert r.status_code == 504
    [job_id] = stack.runner.running
    assert r.json()["message"] == f"song {job_id} is still running after 0.2 s; follow it at /v1/songs/{job_id}"
    gate.release()
    assert (await stack.runner.wait(job_id, 5)).status == "succeeded"


async def test_an_unreachable_job_store_while_waiting_is_a_503(client, stack, monkeypatch):
    from serve_app.jobs import StoreUnavailable

    async def down(job_id, timeout_s):
        raise StoreUnavailable("job store unavailable: connection refused")

    monkeypatch.setattr(stack.runner, "wait", down)
    r = await client.post("/generate-with-lyrics", json=BODIES["/generate-with-lyrics"], headers=AUTH)
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
