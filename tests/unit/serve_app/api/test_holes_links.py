"""The request's Host header built the signed download links (issue 16, item 6): anyone who could
make a victim's client (or a cache) see a forged Host got links to their own server. Links now
come from the configured `storage.public_base_url`, else the address the server accepted the
connection on when that is loopback (dev), else they are relative ('/files/...')."""

from __future__ import annotations

import httpx
import pytest

from serve_app.api import create_api
from serve_app.storage import LocalStore
from tests.unit.serve_app.api.conftest import AUTH

SECRET = b"route-test-secret-0123456789abcdef"
BODY = {"prompt": "lofi, piano", "lyrics": "[verse]\nrain", "audio_duration": 10, "variations": 2}
FORGED = {"Host": "evil.example", "X-Forwarded-Host": "evil.example", "Forwarded": "host=evil.example"}


@pytest.fixture
def stack_options(tmp_path, request):
    store = LocalStore(str(tmp_path / "files"), SECRET, public_base_url=getattr(request, "param", None))
    return {"store": store, "links": store}


def links(song: dict) -> list[str]:
    return [song["audio_url"], song["cover_image_url"], song["manifest_url"], *(t["audio_url"] for t in song["takes"])]


async def finished(client, stack, headers=None) -> dict:
    job_id = (await client.post("/v1/songs", json=BODY, headers=AUTH)).json()["id"]
    await stack.runner.wait(job_id, 5)
    r = await client.get(f"/v1/songs/{job_id}", headers={**AUTH, **(headers or {})})
    assert r.status_code == 200
    return r.json()["result"]


async def test_a_forged_host_never_reaches_a_link(client, stack):
    song = await finished(client, stack, FORGED)
    assert len(links(song)) == 5  # two takes, the cover, the manifest (take 0 twice)
    for url in links(song):
        assert "evil.example" not in url and url.startswith("/files/songs/")
    listed = (await client.get("/v1/songs", headers={**AUTH, **FORGED})).json()["items"][0]["result"]
    assert not any("evil.example" in u for u in links(listed))


async def test_the_synchronous_endpoints_use_no_host_header_either(client, stack):
    r = await client.post("/generate-with-lyrics", json={**BODY, "variations": 1}, headers={**AUTH, **FORGED})
    assert r.status_code == 200 and "evil.example" not in r.text
    assert r.json()["audio_url"].startswith("/files/songs/")


@pytest.mark.parametrize("stack_options", ["https://songs.example"], indirect=True)
async def test_a_configured_public_base_url_builds_every_link(client, stack):
    song = await finished(client, stack, FORGED)
    assert all(u.startswith("https://songs.example/files/songs/") for u in links(song))


async def test_on_a_loopback_bind_links_name_the_bound_address_not_the_host_header(stack):
    transport = httpx.ASGITransport(app=create_api(stack.services))  # scope["server"] is the URL's host
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8123") as client:
        song = await finished(client, stack, FORGED)
        assert all(u.startswith("http://127.0.0.1:8123/files/songs/") for u in links(song))
        r = await client.get(song["audio_url"][len("http://127.0.0.1:8123"):])
        assert r.status_code == 200  # and the link works


async def test_the_studio_redirect_is_relative(client):
    r = await client.get("/studio/", headers=FORGED)
    assert r.is_redirect and "evil.example" not in r.headers["location"]
