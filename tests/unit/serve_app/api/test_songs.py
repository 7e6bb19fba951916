"""/v1/songs: submit, idempotency, queue limits, webhooks refused, list, read, cancel, ownership."""

from __future__ import annotations

import pytest

from serve_app.jobs import StoreUnavailable
from tests.unit.serve_app.api.conftest import AUTH, OTHER

BODY = {"prompt": "lofi, piano", "lyrics": "[verse]\nrain on the window", "audio_duration": 10}


@pytest.fixture
def stack_options(request):
    return getattr(request, "param", {})


async def test_submit_answers_202_with_the_job_and_its_location_then_it_succeeds(client, stack):
    r = await client.post("/v1/songs", json=BODY, headers=AUTH)
    assert r.status_code == 202
    job = r.json()
    assert r.headers["location"] == f"/v1/songs/{job['id']}"
    assert job["mode"] == "lyrics" and job["status"] in ("queued", "running")
    await stack.runner.wait(job["id"], 5)
    done = (await client.get(f"/v1/songs/{job['id']}", headers=AUTH)).json()
    assert done["status"] == "succeeded" and done["result"]["audio_url"].startswith("https://storage.example/")
    assert done["result"]["song_id"] == job["id"]


@pytest.mark.parametrize(("body", "mode"), [
    ({"full_described_song": "sea shanty"}, "description"),
    ({"prompt": "rock", "described_lyrics": "a surfing dog"}, "described_lyrics"),
    ({"prompt": "ambient", "instrumental": True}, "lyrics"),
])
async def test_every_mode_is_one_body(client, body, mode):
    r = await client.post("/v1/songs", json={**body, "audio_duration": 10}, headers=AUTH)
    assert r.status_code == 202 and r.json()["mode"] == mode


@pytest.mark.parametrize(("body", "message"), [
    ({"full_described_song": "x", "prompt": "y"}, "full_described_song cannot be combined"),
    ({"lyrics": "no tags"}, "give either full_described_song, or prompt"),
    ({"prompt": "x", "lyrics": "a", "described_lyrics": "b"}, "give lyrics or described_lyrics, not both"),
    ({"prompt": "x", "webhook_url": "ftp://example.com/hook"}, "webhook_url must be an http(s) URL"),
    ({"prompt": "x", "audio_format": "aac"}, "audio_format: Input should be 'wav', 'flac', 'mp3' or 'opus'"),
])
async def test_bad_bodies_are_422s_that_say_what_to_fix(client, body, message):
    r = await client.post("/v1/songs", json=body, headers=AUTH)
    assert r.status_code == 422 and message in r.json()["message"]


async def test_the_same_idempotency_key_and_body_give_the_same_job_another_body_a_409(client):
    h = {**AUTH, "Idempotency-Key": "song-1"}
    first = await client.post("/v1/songs", json=BODY, headers=h)
    again = await client.post("/v1/songs", json=BODY, headers=h)
    assert (first.status_code, again.status_code) == (202, 200) and first.json()["id"] == again.json()["id"]
    other = await client.post("/v1/songs", json={**BODY, "audio_duration": 20}, headers=h)
    assert other.status_code == 409
    assert other.json()["message"] == "this Idempotency-Key was already used with another body"


@pytest.mark.parametrize("stack_options", [{"allow_private_webhooks": False}], indirect=True)
async def test_a_webhook_to_a_private_address_is_refused_with_a_422(client):
    r = await client.post("/v1/songs", json={**BODY, "webhook_url": "http://127.0.0.1:9/hook"}, headers=AUTH)
    assert r.status_code == 422
    assert r.json()["message"] == "webhook_url host '127.0.0.1' resolves to a private, loopback or link-local address"


@pytest.mark.parametrize("stack_options", [{"concurrency": 1, "max_queued": 1}], indirect=True)
async def test_past_the_queue_limit_submissions_get_429_with_retry_after(client, stack):
    stack.models.gate("music:1")  # hold the first song so the next one stays queued
    assert (await client.post("/v1/songs", json=BODY, headers=AUTH)).status_code == 202
    import asyncio
    for _ in range(100):
        if stack.runner.running:
            break
        await asyncio.sleep(0.01)
    assert (await client.post("/v1/songs", json=BODY, headers=AUTH)).status_code == 202  # queued
    r = await client.post("/v1/songs", json=BODY, headers=AUTH)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.json()["message"].startswith("too many songs queued; retry in ")


async def test_list_is_newest_first_paged_and_only_the_callers_own(client, stack):
    ids = [(await client.post("/v1/songs", json=BODY, headers=AUTH)).json()["id"] for _ in range(3)]
    await client.post("/v1/songs", json=BODY, headers=OTHER)
    page = (await client.get("/v1/songs?limit=2", headers=AUTH)).json()
    assert [j["id"] for j in page["items"]] == ids[::-1][:2] and page["next_cursor"]
    rest = (await client.get(f"/v1/songs?limit=2&cursor={page['next_cursor']}", headers=AUTH)).json()
    assert [j["id"] for j in rest["items"]] == [ids[0]] and rest["next_cursor"] is None


async def test_an_invalid_cursor_is_a_400(client):
    r = await client.get("/v1/songs?cursor=not-ours", headers=AUTH)
    assert r.status_code == 400 and r.json()["message"] == "invalid cursor"


async def test_another_tokens_job_is_a_404_everywhere(client):
    job_id = (await client.post("/v1/songs", json=BODY, headers=AUTH)).json()["id"]
    for method, path in (("GET", f"/v1/songs/{job_id}"), ("POST", f"/v1/songs/{job_id}/cancel"),
                         ("GET", f"/v1/songs/{job_id}/events")):
        r = await client.request(method, path, headers=OTHER)
        assert r.status_code == 404 and r.json()["message"] == "no such song job"


async def test_a_malformed_job_id_is_a_422(client):
    r = await client.get("/v1/songs/NOT-AN-ID", headers=AUTH)
    assert r.status_code == 422 and "job_id" in r.json()["message"]


async def test_cancel_of_a_running_song_ends_it_cancelled(client, stack):
    gate = stack.models.gate("music:1")
    job_id = (await client.post("/v1/songs", json=BODY, headers=AUTH)).json()["id"]
    await gate.reached.wait()
    r = await client.post(f"/v1/songs/{job_id}/cancel", headers=AUTH)
    assert r.status_code == 200 and r.json()["cancel_requested"]
    done = await stack.runner.wait(job_id, 5)
    assert done.status == "cancelled" and stack.store.objects == {}


async def test_an_unreachable_job_store_is_a_503_with_retry_after(client, stack, monkeypatch):
    def down(*a, **kw):
        raise StoreUnavailable("job store unavailable (sqlite:///jobs.db): disk I/O error")

    monkeypatch.setattr(stack.jobs, "create", down)
    monkeypatch.setattr(stack.jobs, "list", down)
    for method, path in (("POST", "/v1/songs"), ("GET", "/v1/songs")):
        r = await client.request(method, path, json=BODY if method == "POST" else None, headers=AUTH)
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert r.json()["message"].startswith("job store unavailable") and "sqlite" not in r.text
