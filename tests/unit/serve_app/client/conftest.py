"""The clients against the real app (`create_api`) over the fakes, through httpx transports.

Async tests use httpx.ASGITransport in the test's loop (where the runner runs). Sync tests (the
sync client and the CLI, which run no loop of their own) use `BridgeTransport`: the stack and the
app live in a loop on a background thread and each request is carried over to it. `CuttingTransport`
drops event streams part-way, as a flaky network would. The local storage backend signs the
download links, so downloads go through the same app (`/files/...`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from serve_app.api import create_api
from serve_app.client import AsyncSongsmith, Songsmith
from serve_app.storage import LocalStore
from tests.support.fakes import API_TOKEN, fake_services

BASE_URL = "http://songsmith.test"
SECRET = b"client-test-secret-0123456789abcdef"
SONG = {"prompt": "lofi, piano", "lyrics": "[verse]\nrain on the window", "audio_duration": 10}


@pytest.fixture
def clock() -> list[float]:
    """The local store's clock: advance it to expire download links."""
    return [1_900_000_000.0]


@pytest.fixture
def stack_options(tmp_path, clock) -> dict:
    store = LocalStore(str(tmp_path / "files"), SECRET, clock=lambda: clock[0])
    return {"store": store, "links": store}


@pytest.fixture
async def stack(tmp_path, stack_options):
    s = fake_services(tmp_path / "jobs.db", **stack_options)
    s.runner.start()
    s.services.webhooks.start()
    yield s
    await s.runner.drain()
    await s.services.webhooks.stop()


@pytest.fixture
def asgi(stack) -> httpx.ASGITransport:
    return httpx.ASGITransport(app=create_api(stack.services))


@pytest.fixture
async def api(asgi):
    async with AsyncSongsmith(BASE_URL, API_TOKEN, transport=asgi, reconnect_delay_s=0.01,
                              poll_interval_s=0.02) as client:
        yield client


# -- cutting event streams --


def cut_after(body: bytes, events: int) -> bytes:
    """The first `events` complete SSE events of `body`, then half of the next one."""
    blocks = body.split(b"\n\n")
    kept = b"".join(b + b"\n\n" for b in blocks[:events])
    rest = blocks[events] if events < len(blocks) else b""
    return kept + rest[: len(rest) // 2]


class _AsyncCut(httpx.AsyncByteStream):
    def __init__(self, data: bytes):
        self.data = data

    async def __aiter__(self):
        if self.data:
            yield self.data
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


class _SyncCut(httpx.SyncByteStream):
    def __init__(self, data: bytes):
        self.data = data

    def __iter__(self):
        if self.data:
            yield self.data
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


@dataclass
class Cuts:
    """The first `times` event streams are cut after `keep` events (times=None: every one)."""

    times: int | None = 2
    keep: int = 2
    seen: list[str | None] = field(default_factory=list)  # Last-Event-ID of each events request

    def applies(self, request: httpx.Request) -> bool:
        if not request.url.path.endswith("/events"):
            return False
        self.seen.append(request.headers.get("last-event-id"))
        return self.times is None or len(self.seen) <= self.times


class CuttingTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, cuts: Cuts):
        self.inner, self.cuts = inner, cuts

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        cut = self.cuts.applies(request)
        if cut and not self.cuts.keep:  # dies at once (the in-process app answers a stream only when it ends)
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=_AsyncCut(b""))
        response = await self.inner.handle_async_request(request)
        if not cut:
            return response
        body = await response.aread()
        return httpx.Response(response.status_code, headers=response.headers, stream=_AsyncCut(
            cut_after(body, self.cuts.keep)))


class SyncCuttingTransport(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport, cuts: Cuts):
        self.inner, self.cuts = inner, cuts

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        cut = self.cuts.applies(request)
        if cut and not self.cuts.keep:
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=_SyncCut(b""))
        response = self.inner.handle_request(request)
        if not cut:
            return response
        return httpx.Response(response.status_code, headers=response.headers,
                              stream=_SyncCut(cut_after(response.read(), self.cuts.keep)))


# -- the sync side: the stack on a loop of its own --


class BridgeTransport(httpx.BaseTransport):
    """A sync transport into an ASGI app that runs on `loop` (another thread)."""

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop, *, timeout_s: float = 60.0):
        self.inner, self.loop, self.timeout_s = httpx.ASGITransport(app=app), loop, timeout_s
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = request.read()

        async def call() -> tuple[int, list, bytes]:
            forwarded = httpx.Request(request.method, request.url, headers=request.headers, content=body)
            r = await self.inner.handle_async_request(forwarded)
            return r.status_code, r.headers.raw, await r.aread()

        status, headers, content = asyncio.run_coroutine_threadsafe(call(), self.loop).result(self.timeout_s)
        return httpx.Response(status, headers=headers, content=content)


@dataclass
class SyncStack:
    stack: Any
    transport: BridgeTransport
    run: Callable[..., Any]  # run(coroutine) on the stack's loop, returning its result

    def client(self, **kw) -> Songsmith:
        return Songsmith(BASE_URL, API_TOKEN, transport=kw.pop("transport", self.transport),
                         reconnect_delay_s=0.01, poll_interval_s=0.02, **kw)


@pytest.fixture
def sync_stack(tmp_path, stack_options):
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="stack-loop", daemon=True)
    thread.start()

    def run(coro, timeout_s: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout_s)

    async def start():
        s = fake_services(tmp_path / "jobs.db", **stack_options)
        s.runner.start()
        s.services.webhooks.start()
        return s

    async def stop(s):
        await s.runner.drain()
        await s.services.webhooks.stop()
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in rest:
            t.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    s = run(start())
    try:
        yield SyncStack(s, BridgeTransport(create_api(s.services), loop), run)
    finally:
        run(stop(s))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
