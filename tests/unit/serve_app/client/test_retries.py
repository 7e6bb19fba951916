"""Requests that got a proxy's 500/502/503/504 or lost their connection are sent again only
where that is safe: a create's retry carries the same Idempotency-Key, so the song that the
first try made comes back instead of a second one (what Serve's proxy answers when the ingress
replica holding the request dies: docs/reliability.md)."""

from __future__ import annotations

import httpx
import pytest

from serve_app.client import AsyncSongsmith, SongsmithConnectionError, SongsmithError
from tests.unit.serve_app.api.test_edits import wav
from tests.unit.serve_app.client.conftest import API_TOKEN, BASE_URL, SONG


class Flaky(httpx.AsyncBaseTransport):
    """Fails the first `times` requests matching `method path`: `after` forwards the request
    first (it took effect) then answers `status`; otherwise the connection drops before it."""

    def __init__(self, inner, method: str, path: str, *, times: int = 1, status: int | None = 500,
                 after: bool = True, headers: dict | None = None):
        self.inner, self.method, self.path = inner, method, path
        self.times, self.status, self.after, self.headers = times, status, after, headers or {}
        self.seen: list[httpx.Request] = []

    async def handle_async_request(self, request):
        if request.method != self.method or request.url.path != self.path:
            return await self.inner.handle_async_request(request)
        self.seen.append(request)
        if len(self.seen) > self.times:
            return await self.inner.handle_async_request(request)
        if self.after:
            response = await self.inner.handle_async_request(request)
            await response.aread()
        if self.status is None:
            raise httpx.ReadError("connection reset by peer")
        return httpx.Response(self.status, headers={"content-type": "text/plain", **self.headers},
                              content=b"Internal Server Error")


def client(transport, **kw) -> AsyncSongsmith:
    return AsyncSongsmith(BASE_URL, API_TOKEN, transport=transport, reconnect_delay_s=0.01, **kw)


@pytest.mark.parametrize("status", [500, 502, 503, 504, None])
async def test_a_create_whose_answer_was_lost_is_retried_and_makes_one_song(asgi, stack, status):
    flaky = Flaky(asgi, "POST", "/v1/songs", status=status)
    async with client(flaky) as api:
        job = await api.create_song(**SONG)
        listed = (await api.list_songs())["items"]
    assert len(flaky.seen) == 2
    keys = {r.headers["idempotency-key"] for r in flaky.seen}
    assert len(keys) == 1 and keys.pop().startswith("songsmith-client-")  # one key, made for this call
    assert [j["id"] for j in listed] == [job["id"]]  # the first try's job, not a second one


async def test_a_given_idempotency_key_is_the_one_retried(asgi):
    flaky = Flaky(asgi, "POST", "/v1/edits", status=502, after=False)
    async with client(flaky) as api:
        song = await api.wait((await api.create_song(**SONG))["id"])
        edit = await api.create_edit("repaint", song_id=song["id"], repaint_start_s=1.0, repaint_end_s=2.0,
                                     idempotency_key="my-edit-1")
    assert edit["mode"] == "repaint"
    assert [r.headers["idempotency-key"] for r in flaky.seen] == ["my-edit-1", "my-edit-1"]


async def test_retries_are_bounded_and_the_last_answer_is_raised(asgi):
    flaky = Flaky(asgi, "GET", "/v1/songs", times=10, status=503, after=False, headers={"retry-after": "0"})
    async with client(flaky, max_retries=2) as api:
        with pytest.raises(SongsmithError) as err:
            await api.list_songs()
    assert err.value.status == 503 and len(flaky.seen) == 3  # the first try and two retries


async def test_a_post_without_a_key_is_not_replayed(asgi):
    flaky = Flaky(asgi, "POST", "/v1/uploads", status=None, after=False)
    async with client(flaky) as api:
        with pytest.raises(SongsmithConnectionError):
            await api.upload(wav(2.0), filename="take.wav", presigned=False)
    assert len(flaky.seen) == 1  # an upload has no key: sending it twice could store it twice


async def test_client_errors_are_not_retried(asgi):
    flaky = Flaky(asgi, "GET", "/v1/songs/" + "0" * 32, status=404, after=False)
    async with client(flaky) as api:
        with pytest.raises(SongsmithError) as err:
            await api.get_song("0" * 32)
    assert err.value.status == 404 and len(flaky.seen) == 1


async def test_max_retries_zero_turns_retries_off_and_negative_is_refused(asgi):
    flaky = Flaky(asgi, "GET", "/v1/songs", status=503, after=False)
    async with client(flaky, max_retries=0) as api:
        with pytest.raises(SongsmithError) as err:
            await api.list_songs()
    assert err.value.status == 503 and len(flaky.seen) == 1
    with pytest.raises(ValueError, match="max_retries"):
        AsyncSongsmith(BASE_URL, API_TOKEN, max_retries=-1)


class SyncFlaky(httpx.BaseTransport):
    """The sync client's twin of Flaky (answer lost after the request took effect)."""

    def __init__(self, inner, method: str, path: str, status: int = 500):
        self.inner, self.method, self.path, self.status = inner, method, path, status
        self.seen: list[httpx.Request] = []

    def handle_request(self, request):
        response = self.inner.handle_request(request)
        if request.method == self.method and request.url.path == self.path:
            self.seen.append(request)
            if len(self.seen) == 1:
                return httpx.Response(self.status, content=b"Internal Server Error")
        return response


def test_the_sync_client_retries_a_lost_create_the_same_way(sync_stack):
    flaky = SyncFlaky(sync_stack.transport, "POST", "/v1/songs")
    with sync_stack.client(transport=flaky) as api:
        job = api.create_song(**SONG)
        assert [j["id"] for j in api.list_songs()["items"]] == [job["id"]]
    assert len(flaky.seen) == 2 and len({r.headers["idempotency-key"] for r in flaky.seen}) == 1
