"""AsyncSongsmith against the real app over the fakes: every /v1 endpoint, errors carrying the
server's message, the event stream resumed after drops (and given up on, boundedly), wait and
download (every take, the cover, song.json; expired links refreshed; the token kept from other
hosts), uploads direct and presigned."""

from __future__ import annotations

import json

import httpx
import pytest

from serve_app.api import create_api
from serve_app.client import AsyncSongsmith, SongFailed, SongsmithConnectionError, SongsmithError
from tests.support.fakes import InMemoryStore
from tests.unit.serve_app.api.test_edits import wav
from tests.unit.serve_app.client.conftest import (
    API_TOKEN,
    BASE_URL,
    SONG,
    Cuts,
    CuttingTransport,
)

MISSING = "0" * 32


async def test_a_song_is_created_followed_and_downloaded_take_by_take(api, stack, tmp_path):
    job = await api.create_song(**SONG, variations=2, seed=5)
    assert job["status"] == "queued" and job["mode"] == "lyrics"
    seen = []
    done = await api.wait(job["id"], on_event=seen.append)
    assert done["status"] == "succeeded" and [t["seed"] for t in done["result"]["takes"]] == [5, 6]
    assert [e.seq for e in seen] == list(range(1, len(seen) + 1)) and seen[-1].terminal
    assert [e.data["stage"] for e in seen if e.type == "stage"] == ["painting", "composing", "encoding", "uploading"]
    assert [e.data["step"] for e in seen if e.type == "progress"] == [1, 2, 3, 4]

    got = await api.download(done, tmp_path / "out")
    assert [p.name for p in got.files] == ["audio.wav", "audio-1.wav", "cover.png", "manifest.json", "song.json"]
    result = done["result"]
    for path, key in zip(got.audio, [t["r2_key"] for t in result["takes"]], strict=True):
        assert path.read_bytes() == await stack.store.get(key)
    assert got.cover.read_bytes() == await stack.store.get(result["cover_image_r2_key"])
    record = json.loads(got.metadata.read_text())
    assert record["id"] == job["id"] and record["result"]["manifest_r2_key"] == result["manifest_r2_key"]
    assert got.manifest.read_bytes() == await stack.store.get(result["manifest_r2_key"])
    assert json.loads(got.manifest.read_text())["song_id"] == job["id"]
    assert not list((tmp_path / "out").glob("*.part"))


async def test_errors_carry_the_servers_status_and_message(api, asgi):
    with pytest.raises(SongsmithError) as e:
        await api.get_song(MISSING)
    assert (e.value.status, e.value.message) == (404, "no such song job")
    with pytest.raises(SongsmithError) as e:
        await api.create_song(full_described_song="x", audio_duration=5)
    assert e.value.status == 422 and e.value.message == "audio_duration: Input should be greater than or equal to 10"
    assert isinstance(e.value.detail, list)  # the validation errors themselves
    with pytest.raises(SongsmithError) as e:
        await api.create_edit("repaint", song_id=MISSING, repaint_start_s=1, repaint_end_s=2)
    assert (e.value.status, e.value.message) == (404, "no such song (source)")
    with pytest.raises(SongsmithError) as e:
        await api.events(MISSING).__anext__()
    assert e.value.status == 404  # a 4xx on the stream is raised, not retried
    async with AsyncSongsmith(BASE_URL, "wrong-token-" + "x" * 20, transport=asgi) as other:
        with pytest.raises(SongsmithError) as e:
            await other.list_songs()
        assert (e.value.status, e.value.message) == (401, "missing or invalid bearer token")
        assert (await other.health())["status"] == "ok"  # no token needed


async def test_the_event_stream_resumes_after_drops_without_gaps_or_repeats(api, asgi, stack):
    job = await api.create_song(**SONG)
    await stack.runner.wait(job["id"], 5)
    whole = [e async for e in api.events(job["id"])]
    cuts = Cuts(times=2, keep=2)
    async with AsyncSongsmith(BASE_URL, API_TOKEN, transport=CuttingTransport(asgi, cuts),
                              reconnect_delay_s=0.01) as flaky:
        resumed = [e async for e in flaky.events(job["id"])]
        assert resumed == whole and resumed[-1].terminal
        assert cuts.seen == [None, "2", "4"]  # each reconnect asks for what came after the last event
        tail = [e async for e in flaky.events(job["id"], after=len(whole) - 2)]
        assert tail == whole[-2:]


async def test_a_stream_that_keeps_dropping_is_given_up_after_the_retry_bound(asgi, stack):
    cuts = Cuts(times=None, keep=0)  # every stream dies before its first event
    async with AsyncSongsmith(BASE_URL, API_TOKEN, transport=CuttingTransport(asgi, cuts), max_reconnects=3,
                              reconnect_delay_s=0.001, poll_interval_s=0.02) as flaky:
        job = await flaky.create_song(**SONG)
        with pytest.raises(SongsmithConnectionError, match="kept dropping"):
            [e async for e in flaky.events(job["id"])]
        assert len(cuts.seen) == 4  # the first try and 3 reconnects, then no more
        done = await flaky.wait(job["id"])  # wait falls back to polling
        assert done["status"] == "succeeded" and done["result"]["takes"]


async def test_library_calls_list_filter_cancel_delete_and_edits(api, stack):
    first = await api.wait((await api.create_song(**SONG))["id"])
    edit = await api.create_edit("repaint", song_id=first["id"], take=0, repaint_start_s=2, repaint_end_s=4, seed=3)
    assert edit["mode"] == "repaint" and edit["parent_id"] == first["id"]
    await api.wait(edit["id"])
    assert [j["id"] for j in (await api.edits(first["id"]))["items"]] == [edit["id"]]
    assert [j["id"] for j in (await api.list_songs(mode="repaint"))["items"]] == [edit["id"]]
    assert [j["id"] async for j in api.iter_songs(page_size=1)] == [edit["id"], first["id"]]

    gate = stack.models.gate("music:1")
    running = await api.create_song(**SONG)
    await gate.reached.wait()
    assert [j["id"] for j in (await api.list_songs(status=["running", "queued"]))["items"]] == [running["id"]]
    assert (await api.cancel(running["id"]))["cancel_requested"]
    assert (await api.wait(running["id"]))["status"] == "cancelled"

    await api.delete(first["id"])
    await api.delete(first["id"])  # again: 204 too
    with pytest.raises(SongsmithError) as e:
        await api.get_song(first["id"])
    assert e.value.status == 404


async def test_a_cancelled_song_cannot_be_downloaded(api, stack, tmp_path):
    gate = stack.models.gate("music:1")
    job = await api.create_song(**SONG)
    await gate.reached.wait()
    await api.cancel(job["id"])
    done = await api.wait(job["id"])
    with pytest.raises(SongFailed, match="cancelled"):
        await api.download(done, tmp_path)
    gate.release()
    stack.models.failures["music"] = RuntimeError("out of GPU memory")
    with pytest.raises(SongFailed, match="music failed: RuntimeError: out of GPU memory") as e:
        await api.generate(**SONG)  # generate raises when the song does not succeed
    assert e.value.job["status"] == "failed"


async def test_a_download_with_expired_links_fetches_fresh_ones_once(api, stack, clock, tmp_path):
    done = await api.wait((await api.create_song(**SONG))["id"])
    clock[0] += 3600  # past the links' 600 s
    got = await api.download(done, tmp_path)
    assert got.audio[0].read_bytes() == await stack.store.get(done["result"]["r2_key"])


async def test_uploads_go_direct_when_the_server_refuses_to_presign(api, asgi, tmp_path):
    path = tmp_path / "riff.wav"
    path.write_bytes(wav(2.0))
    up = await api.upload(path)
    assert up["original"]["filename"] == "riff.wav" and up["duration_s"] == pytest.approx(2.0, abs=1e-3)
    assert api._direct_uploads_only  # learnt from the 409: the next upload does not ask again
    assert (await api.get_upload(up["upload_id"]))["upload_id"] == up["upload_id"]
    second = await api.upload(wav(1.5), filename="b.wav")
    edit = await api.create_edit("cover", upload_id=second["upload_id"], prompt="jazz", cover_strength=0.5)
    assert (await api.wait(edit["id"]))["status"] == "succeeded"
    await api.delete_upload(up["upload_id"])
    with pytest.raises(SongsmithError) as e:
        await api.get_upload(up["upload_id"])
    assert (e.value.status, e.value.message) == (404, "no such upload")
    with pytest.raises(SongsmithError) as e:
        await api.upload(path, presigned=True)  # insisting on presigning: the 409 is raised
    assert e.value.status == 409 and "directly" in e.value.message


class BucketStore(InMemoryStore):
    """Storage on another host: presigned PUTs and download links point at bucket.example."""

    def signed_url(self, key, ttl_s=None) -> str:
        return f"https://bucket.example/{key}?sig=get"

    def signed_put_url(self, key, ttl_s, content_type) -> str:
        return f"https://bucket.example/{key}?sig=put"


@pytest.mark.parametrize("stack_options", [{"store": BucketStore()}])
async def test_storage_on_another_host_gets_presigned_uploads_and_never_the_token(stack, tmp_path):
    app = httpx.ASGITransport(app=create_api(stack.services))
    bucket_requests: list[httpx.Request] = []

    async def bucket(request: httpx.Request) -> httpx.Response:
        bucket_requests.append(request)
        key = request.url.path.lstrip("/")
        if request.method == "PUT":
            await stack.store.put(key, await request.aread(), request.headers["content-type"])
            return httpx.Response(200)
        return httpx.Response(200, content=await stack.store.get(key))

    class Router(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request):
            if request.url.host == "bucket.example":
                return await bucket(request)
            return await app.handle_async_request(request)

    async with AsyncSongsmith(BASE_URL, API_TOKEN, transport=Router()) as api:
        up = await api.upload(wav(2.0), filename="x.wav")
        assert up["duration_s"] == pytest.approx(2.0, abs=1e-3) and not api._direct_uploads_only
        [put] = bucket_requests
        assert put.method == "PUT" and put.headers["content-type"] == "application/octet-stream"
        done = await api.wait((await api.create_song(**SONG))["id"])
        got = await api.download(done, tmp_path)
        assert got.audio[0].read_bytes() == await stack.store.get(done["result"]["r2_key"])
    assert len(bucket_requests) == 4  # the PUT, the audio, the cover, the manifest
    assert all("authorization" not in r.headers for r in bucket_requests)


def test_url_and_token_come_from_arguments_then_the_environment(monkeypatch):
    monkeypatch.setenv("SONGSMITH_URL", "https://songs.example/")
    monkeypatch.setenv("SONGSMITH_TOKEN", "env-token")
    api = AsyncSongsmith()
    assert (api.base_url, api.token) == ("https://songs.example", "env-token")
    assert api.headers()["Authorization"] == "Bearer env-token"
    assert AsyncSongsmith("http://other:8000", "arg").base_url == "http://other:8000"
    monkeypatch.delenv("SONGSMITH_URL")
    assert AsyncSongsmith().base_url == "http://127.0.0.1:8000"
    with pytest.raises(ValueError, match="http"):
        AsyncSongsmith("songs.example")


async def test_an_unreachable_server_is_a_connection_error():
    def refuse(request):
        raise httpx.ConnectError("connection refused")

    async with AsyncSongsmith(BASE_URL, API_TOKEN, transport=httpx.MockTransport(refuse)) as api:
        with pytest.raises(SongsmithConnectionError, match="cannot reach http://songsmith.test"):
            await api.list_songs()


async def test_wait_times_out_while_the_song_keeps_running(asgi, stack):
    from serve_app.client import WaitTimeout

    gate = stack.models.gate("music:1")
    cuts = Cuts(times=None, keep=0)
    async with AsyncSongsmith(BASE_URL, API_TOKEN, transport=CuttingTransport(asgi, cuts), max_reconnects=0,
                              poll_interval_s=0.01) as api:
        job = await api.create_song(**SONG)
        await gate.reached.wait()
        with pytest.raises(WaitTimeout, match="still running"):
            await api.wait(job["id"], timeout=0.1)
        assert (await api.get_song(job["id"]))["status"] == "running"
        gate.release()
        assert (await api.wait(job["id"], timeout=10))["status"] == "succeeded"


async def test_capabilities_are_the_servers(api):
    caps = await api.capabilities()
    assert caps["tasks"] == ["text2music", "cover", "repaint", "extend"] and "extract" in caps["unavailable"]
