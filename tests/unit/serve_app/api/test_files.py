"""/files: the local backend's signed links, served only when the store signs its own links."""

from __future__ import annotations

import httpx
import pytest

from serve_app.api import create_api
from serve_app.storage import LocalStore

SECRET = b"route-test-secret-0123456789abcdef"


NOW = [1_900_000_000.0]


@pytest.fixture
def stack_options(tmp_path):
    NOW[0] = 1_900_000_000.0
    store = LocalStore(str(tmp_path / "files"), SECRET, clock=lambda: NOW[0])
    return {"store": store, "links": store}


async def test_a_signed_link_downloads_the_object_with_its_content_type(client, stack):
    await stack.store.put("songs/x/audio.wav", b"RIFF1234", "audio/wav")
    url = stack.store.signed_url("songs/x/audio.wav", 60)
    r = await client.get(url)
    assert r.status_code == 200 and r.content == b"RIFF1234" and r.headers["content-type"] == "audio/wav"


async def test_forged_expired_and_missing_links_are_refused(client, stack):
    await stack.store.put("songs/x/audio.wav", b"RIFF", "audio/wav")
    good = stack.store.signed_url("songs/x/audio.wav", 60)
    forged = good[:-4] + "0000"
    r = await client.get(forged)
    assert r.status_code == 403 and r.json()["message"] == "invalid link signature"
    expired = stack.store.signed_url("songs/x/audio.wav", 1)
    NOW[0] += 30  # past the 1 s link, within the 60 s one
    r = await client.get(expired)
    assert r.status_code == 403 and r.json()["message"] == "link expired"
    await stack.store.delete("songs/x/audio.wav")
    r = await client.get(good)
    assert r.status_code == 404 and r.json()["message"] == "no such object"
    r = await client.get("/files/songs/../../etc/passwd?expires=1&sig=" + "0" * 64)
    assert r.status_code in (403, 404)


async def test_without_signed_links_there_is_no_files_route(stack):
    stack.services.links = None
    transport = httpx.ASGITransport(app=create_api(stack.services))
    async with httpx.AsyncClient(transport=transport, base_url="http://songsmith.test") as c:
        r = await c.get("/files/songs/x/audio.wav?expires=1&sig=00")
    assert r.status_code == 404 and r.json()["message"] == "Not Found"


async def test_a_finished_song_links_its_manifest_which_downloads_as_json(client, stack):
    from tests.unit.serve_app.api.conftest import AUTH

    job = (await client.post("/v1/songs", json={"prompt": "lofi", "lyrics": "[verse]\nrain", "audio_duration": 10},
                             headers=AUTH)).json()
    done = await stack.runner.wait(job["id"], 5)
    song = (await client.get(f"/v1/songs/{done.id}", headers=AUTH)).json()["result"]
    r = await client.get(song["manifest_url"])
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.content == await stack.store.get(song["manifest_r2_key"])
    manifest = r.json()
    assert manifest["song_id"] == done.id and manifest["result"]["title"] == song["title"]
