"""A small typed client of the Songsmith REST API (`/v1`), over httpx: `Songsmith` (sync) and
`AsyncSongsmith` (async) have the same methods.

    from serve_app.client import Songsmith

    with Songsmith() as api:                       # SONGSMITH_URL / SONGSMITH_TOKEN
        job = api.create_song(full_described_song="a slow waltz about the sea", audio_duration=30)
        job = api.wait(job["id"], on_event=print)   # follows the SSE stream (resumes on drops)
        files = api.download(job, "out/")           # every take, the cover, song.json

Every non-2xx answer raises `SongsmithError(status, message)` with the server's own `message`;
an unreachable server raises `SongsmithConnectionError`. A 500/502/503/504 or a dropped connection
is retried (`max_retries`, default 2; Retry-After honoured) where replaying is safe: reads, deletes,
and creates, which always carry an Idempotency-Key (a fresh one per call unless given). Pass `transport=` (an httpx transport)
to talk to an app in-process (tests) or through a proxy.

Only httpx and the standard library are imported: the client runs on a laptop without torch or ray.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TypedDict, Unpack

import httpx

from ._common import (
    KEEPALIVE,
    TERMINAL_STATUSES,
    Downloaded,
    SongEvent,
    SongFailed,
    SongsmithConnectionError,
    SongsmithError,
    SSEParser,
    RETRY_STATUSES,
    download_plan,
    drop_none,
    edit_body,
    edit_source,
    error_from,
    new_idempotency_key,
    record,
    replayable,
    retry_delay_s,
    resolve_settings,
    same_origin,
    song_body,
    upload_payload,
    write_metadata,
)

__all__ = ["AsyncSongsmith", "EditFields", "SongFields", "Songsmith", "WaitTimeout"]

AudioFormat = Literal["wav", "flac", "mp3", "opus"]
EditTask = Literal["cover", "repaint", "extend", "extract", "lego", "complete"]
Job = dict[str, Any]
EventCallback = Callable[[SongEvent], Any]
STREAM_READ_TIMEOUT_S = 60.0  # the server sends a keep-alive every 15 s
MAX_RECONNECT_DELAY_S = 8.0


class SongFields(TypedDict, total=False):
    """`POST /v1/songs` fields (the API's names). One mode: `full_described_song`; or `prompt`
    (tags) with `lyrics` or `described_lyrics`; or `prompt` + `instrumental`."""

    full_described_song: str
    prompt: str
    lyrics: str
    described_lyrics: str
    audio_duration: float
    seed: int
    infer_step: int
    guidance_scale: float
    instrumental: bool
    audio_format: AudioFormat
    variations: int
    bpm: int
    keyscale: str
    timesignature: Literal["2", "3", "4", "6"]
    vocal_language: str
    webhook_url: str


class EditFields(TypedDict, total=False):
    """`POST /v1/edits` task parameters (besides `task` and `source`)."""

    prompt: str
    lyrics: str
    repaint_start_s: float
    repaint_end_s: float
    extend_s: float
    cover_strength: float
    track_name: str
    complete_tracks: list[str]
    seed: int
    infer_step: int
    guidance_scale: float
    audio_format: AudioFormat
    variations: int
    bpm: int
    keyscale: str
    timesignature: Literal["2", "3", "4", "6"]
    vocal_language: str
    webhook_url: str


class WaitTimeout(SongsmithError):
    """`wait(timeout=...)` ran out; the job keeps running on the server."""

    def __init__(self, job_id: str, timeout_s: float):
        super().__init__(None, f"song {job_id} did not finish within {timeout_s:g} s; it is still running")
        self.job_id = job_id


def _statuses(value: str | list[str] | tuple[str, ...] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


class _Settings:
    """What both clients are configured with."""

    def __init__(self, base_url: str | None, token: str | None, *, timeout: float, max_reconnects: int,
                 reconnect_delay_s: float, poll_interval_s: float, max_retries: int = 2):
        self.base_url, self.token = resolve_settings(base_url, token)
        if max_reconnects < 0:
            raise ValueError("max_reconnects must be >= 0")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.max_retries = max_retries
        self.timeout = httpx.Timeout(timeout, connect=min(10.0, timeout))
        self.stream_timeout = httpx.Timeout(timeout, connect=min(10.0, timeout), read=STREAM_READ_TIMEOUT_S)
        self.max_reconnects, self.reconnect_delay_s = max_reconnects, reconnect_delay_s
        self.poll_interval_s = poll_interval_s
        self._direct_uploads_only = False  # learnt from a 409 on /v1/uploads/presign

    def headers(self) -> dict[str, str]:
        h = {"User-Agent": "songsmith-client/0.1", "Accept": "application/json"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h

    def backoff(self, failures: int) -> float:
        return min(MAX_RECONNECT_DELAY_S, self.reconnect_delay_s * 2 ** (failures - 1))

    def _strip_foreign_auth(self, request: httpx.Request) -> httpx.Request:
        """The bearer token goes to the Songsmith server only, never to a storage host's link."""
        if not same_origin(str(request.url), self.base_url):
            request.headers.pop("Authorization", None)
        return request

    def _should_retry(self, retry: int, method: str, kw: dict, *, status: int | None = None) -> bool:
        """Whether failure `retry` (1, 2, ...) of this request is retried: a transport error or a
        RETRY_STATUSES answer, on a request that is safe to send again, within max_retries."""
        return (retry <= self.max_retries and (status is None or status in RETRY_STATUSES)
                and replayable(method, kw.get("headers")))

    def _unreachable(self, exc: Exception) -> SongsmithConnectionError:
        return SongsmithConnectionError(f"cannot reach {self.base_url}: {type(exc).__name__}: {exc}")

    @staticmethod
    def _stream_problem(job_id: str, exc: Exception) -> SongsmithConnectionError:
        return SongsmithConnectionError(f"the event stream of song {job_id} kept dropping "
                                        f"({type(exc).__name__}: {exc})")


class Songsmith(_Settings):
    """Synchronous client. Use as a context manager (or call `close()`)."""

    def __init__(self, base_url: str | None = None, token: str | None = None, *, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None, max_reconnects: int = 5,
                 reconnect_delay_s: float = 0.5, poll_interval_s: float = 1.0, max_retries: int = 2):
        super().__init__(base_url, token, timeout=timeout, max_reconnects=max_reconnects,
                         reconnect_delay_s=reconnect_delay_s, poll_interval_s=poll_interval_s,
                         max_retries=max_retries)
        self._http = httpx.Client(base_url=self.base_url, headers=self.headers(), timeout=self.timeout,
                                  transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Songsmith:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing --

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        retry = 0
        while True:
            retry += 1
            try:
                r = self._http.request(method, path, **kw)
            except httpx.TransportError as exc:
                if not self._should_retry(retry, method, kw):
                    raise self._unreachable(exc) from None
                time.sleep(retry_delay_s(retry, self.reconnect_delay_s))
                continue
            if r.status_code >= 400:
                if self._should_retry(retry, method, kw, status=r.status_code):
                    time.sleep(retry_delay_s(retry, self.reconnect_delay_s, r.headers.get("retry-after")))
                    continue
                raise error_from(r.status_code, r.content, r.reason_phrase)
            return r

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self._request(method, path, **kw).json()

    # -- service --

    def health(self) -> dict:
        """`GET /health` (no token needed): `{"status": "ok" | "degraded", "deployments": {...}}`;
        a degraded service's 503 is returned, not raised."""
        try:
            r = self._http.get("/health")
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if r.status_code in (200, 503) and r.headers.get("content-type", "").startswith("application/json"):
            return r.json()
        raise error_from(r.status_code, r.content, r.reason_phrase)

    def auth_status(self) -> dict:
        return self._json("POST", "/auth-status")

    def capabilities(self) -> dict:
        """`GET /v1/capabilities`: the tasks this server runs (and why not the others), stems, ranges."""
        return self._json("GET", "/v1/capabilities")

    # -- songs --

    def create_song(self, *, idempotency_key: str | None = None, **fields: Unpack[SongFields]) -> Job:
        """`POST /v1/songs`: the queued job (202), or the job this Idempotency-Key made before."""
        headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
        return self._json("POST", "/v1/songs", json=song_body(fields), headers=headers)

    def list_songs(self, *, limit: int | None = None, cursor: str | None = None,
                   status: str | list[str] | None = None, mode: str | list[str] | None = None) -> dict:
        """`GET /v1/songs`: `{"items": [...], "next_cursor"}`, newest first."""
        params = drop_none({"limit": limit, "cursor": cursor, "status": _statuses(status), "mode": _statuses(mode)})
        return self._json("GET", "/v1/songs", params=params)

    def iter_songs(self, *, page_size: int = 50, status: str | list[str] | None = None,
                   mode: str | list[str] | None = None) -> Iterator[Job]:
        """Every song, newest first, page after page."""
        cursor = None
        while True:
            page = self.list_songs(limit=page_size, cursor=cursor, status=status, mode=mode)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def get_song(self, job_id: str) -> Job:
        return self._json("GET", f"/v1/songs/{job_id}")

    def cancel(self, job_id: str) -> Job:
        """`POST /v1/songs/{id}/cancel`: a queued job ends at once, a running one at its next step."""
        return self._json("POST", f"/v1/songs/{job_id}/cancel")

    def delete(self, job_id: str) -> None:
        """`DELETE /v1/songs/{id}` (204; again 204)."""
        self._request("DELETE", f"/v1/songs/{job_id}")

    def edits(self, job_id: str, *, limit: int | None = None, cursor: str | None = None) -> dict:
        """`GET /v1/songs/{id}/edits`: the songs made from this one."""
        return self._json("GET", f"/v1/songs/{job_id}/edits", params=drop_none({"limit": limit, "cursor": cursor}))

    def create_edit(self, task: EditTask, *, song_id: str | None = None, take: int | None = None,
                    upload_id: str | None = None, idempotency_key: str | None = None,
                    **fields: Unpack[EditFields]) -> Job:
        """`POST /v1/edits`: a new song job from take `take` of `song_id`, or from `upload_id`."""
        body = edit_body(task, edit_source(song_id, take, upload_id), fields)
        headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
        return self._json("POST", "/v1/edits", json=body, headers=headers)

    # -- uploads --

    def upload(self, source: str | os.PathLike | bytes, *, filename: str | None = None,
               content_type: str | None = None, presigned: bool | None = None) -> dict:
        """Upload audio (a path or the file's bytes) to edit. With `presigned` None (default) the
        presigned flow is used when the server offers it (S3/R2 storage) and a direct upload when
        it answers 409; True insists on presigning, False uploads directly."""
        data, name, ctype = upload_payload(source, filename, content_type)
        if presigned or (presigned is None and not self._direct_uploads_only):
            try:
                slot = self._json("POST", "/v1/uploads/presign")
            except SongsmithError as exc:
                if exc.status != 409 or presigned:
                    raise
                self._direct_uploads_only = True
            else:
                return self._put_presigned(slot, data)
        return self._json("POST", "/v1/uploads", params=drop_none({"filename": name}), content=data,
                          headers={"Content-Type": ctype})

    def _put_presigned(self, slot: dict, data: bytes) -> dict:
        if len(data) > slot.get("max_bytes", len(data)):
            raise SongsmithError(413, f"the file is {len(data)} bytes; the server takes at most {slot['max_bytes']}")
        request = self._strip_foreign_auth(self._http.build_request(
            slot.get("method", "PUT"), slot["put_url"], content=data, headers={"Content-Type": slot["content_type"]}))
        try:
            r = self._http.send(request)
        except httpx.TransportError as exc:
            raise SongsmithConnectionError(f"cannot reach the upload link's host: {exc}") from None
        if r.status_code >= 300:
            raise error_from(r.status_code, r.content, r.reason_phrase)
        return self._json("POST", f"/v1/uploads/{slot['upload_id']}/complete")

    def get_upload(self, upload_id: str) -> dict:
        return self._json("GET", f"/v1/uploads/{upload_id}")

    def delete_upload(self, upload_id: str) -> None:
        self._request("DELETE", f"/v1/uploads/{upload_id}")

    # -- events, waiting, downloading --

    def events(self, job_id: str, after: int | None = None) -> Iterator[SongEvent]:
        """The job's events (`GET /v1/songs/{id}/events`) after event `after` (None: all), ending
        with the terminal status. A dropped stream is resumed from the last event received
        (`Last-Event-ID`), at most `max_reconnects` times in a row without a new event."""
        for item in self._event_stream(job_id, after or 0):
            if item is not None:
                yield item

    def _event_stream(self, job_id: str, last: int) -> Iterator[SongEvent | None]:
        """events(), plus None for each keep-alive (so a waiter can check its deadline)."""
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if last:
                headers["Last-Event-ID"] = str(last)
            try:
                with self._http.stream("GET", f"/v1/songs/{job_id}/events", headers=headers,
                                       timeout=self.stream_timeout) as r:
                    if r.status_code >= 400:
                        err = error_from(r.status_code, r.read(), r.reason_phrase)
                        if r.status_code < 500:
                            raise err
                        problem: SongsmithError = err
                    else:
                        parser = SSEParser()
                        for line in r.iter_lines():
                            for item in parser.feed(line):
                                if item is KEEPALIVE:
                                    yield None
                                elif item.seq > last:  # never twice, even if a server repeats
                                    last, failures = item.seq, 0
                                    yield item
                                    if item.terminal:
                                        return
                        problem = SongsmithConnectionError(f"the event stream of song {job_id} ended early")
            except httpx.TransportError as exc:
                problem = self._stream_problem(job_id, exc)
            failures += 1
            if failures > self.max_reconnects:
                raise problem
            time.sleep(self.backoff(failures))

    def wait(self, job_id: str, *, timeout: float | None = None, on_event: EventCallback | None = None) -> Job:
        """Follow the job until it ends and return it (fresh links; any final status: check
        `status`). `on_event` sees every event of the job, from its first (a finished job's are
        replayed). If the stream cannot be kept up, polls instead.
        `timeout` raises WaitTimeout (the job keeps running); it is checked at each event or
        keep-alive (at least every 15 s)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        job = self.get_song(job_id)
        if job["status"] in TERMINAL_STATUSES and on_event is None:
            return job
        try:
            for item in self._event_stream(job_id, 0):
                if item is not None and on_event is not None:
                    on_event(item)
                if item is not None and item.terminal:
                    return self.get_song(job_id)
                if deadline is not None and time.monotonic() > deadline:
                    raise WaitTimeout(job_id, timeout)
        except SongsmithConnectionError:
            pass  # the stream kept dropping: poll
        while True:
            job = self.get_song(job_id)
            if job["status"] in TERMINAL_STATUSES:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise WaitTimeout(job_id, timeout)
            time.sleep(self.poll_interval_s)

    def download(self, job: Job | str, directory: str | os.PathLike) -> Downloaded:
        """Save a succeeded song's files into `directory`: every take's audio (named as stored:
        audio.<ext>, audio-1.<ext>, ...), cover.png, manifest.json (as stored) and song.json (the job
        record with its result). Expired links are refreshed once."""
        if isinstance(job, str):
            job = self.get_song(job)
        out = Downloaded(Path(directory))
        plan = download_plan(job)
        out.dir.mkdir(parents=True, exist_ok=True)
        urls, refreshed = {name: url for _, url, name in plan}, False
        for kind, _, name in plan:
            path = out.dir / name
            try:
                self._fetch(urls[name], path)
            except SongsmithError as exc:
                if exc.status != 403 or refreshed:
                    raise
                refreshed, job = True, self.get_song(job["id"])  # links expired: fresh ones, once
                urls = {name: url for _, url, name in download_plan(job)}
                self._fetch(urls[name], path)
            record(out, kind, path)
        out.metadata = write_metadata(job, out.dir)
        return out

    def _fetch(self, url: str, path: Path) -> None:
        request = self._strip_foreign_auth(self._http.build_request("GET", url, headers={"Accept": "*/*"}))
        try:
            r = self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        try:
            if r.status_code >= 400:
                raise error_from(r.status_code, r.read(), r.reason_phrase)
            tmp = path.with_name(path.name + ".part")
            with tmp.open("wb") as fh:
                for chunk in r.iter_bytes():
                    fh.write(chunk)
            tmp.replace(path)
        except httpx.TransportError as exc:
            raise SongsmithConnectionError(f"download of {path.name} failed: {exc}") from None
        finally:
            r.close()

    # -- all in one --

    def generate(self, *, on_event: EventCallback | None = None, timeout: float | None = None,
                 idempotency_key: str | None = None, **fields: Unpack[SongFields]) -> Job:
        """create_song + wait; raises SongFailed when the song fails or is cancelled."""
        job = self.wait(self.create_song(idempotency_key=idempotency_key, **fields)["id"], timeout=timeout,
                        on_event=on_event)
        if job["status"] != "succeeded":
            raise SongFailed(job)
        return job


class AsyncSongsmith(_Settings):
    """Asynchronous client: the same methods as `Songsmith`, awaitable (`events` is an async iterator)."""

    def __init__(self, base_url: str | None = None, token: str | None = None, *, timeout: float = 60.0,
                 transport: httpx.AsyncBaseTransport | None = None, max_reconnects: int = 5,
                 reconnect_delay_s: float = 0.5, poll_interval_s: float = 1.0, max_retries: int = 2):
        super().__init__(base_url, token, timeout=timeout, max_reconnects=max_reconnects,
                         reconnect_delay_s=reconnect_delay_s, poll_interval_s=poll_interval_s,
                         max_retries=max_retries)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self.headers(), timeout=self.timeout,
                                       transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncSongsmith:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        retry = 0
        while True:
            retry += 1
            try:
                r = await self._http.request(method, path, **kw)
            except httpx.TransportError as exc:
                if not self._should_retry(retry, method, kw):
                    raise self._unreachable(exc) from None
                await asyncio.sleep(retry_delay_s(retry, self.reconnect_delay_s))
                continue
            if r.status_code >= 400:
                if self._should_retry(retry, method, kw, status=r.status_code):
                    await asyncio.sleep(retry_delay_s(retry, self.reconnect_delay_s, r.headers.get("retry-after")))
                    continue
                raise error_from(r.status_code, r.content, r.reason_phrase)
            return r

    async def _json(self, method: str, path: str, **kw: Any) -> Any:
        return (await self._request(method, path, **kw)).json()

    async def health(self) -> dict:
        try:
            r = await self._http.get("/health")
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if r.status_code in (200, 503) and r.headers.get("content-type", "").startswith("application/json"):
            return r.json()
        raise error_from(r.status_code, r.content, r.reason_phrase)

    async def auth_status(self) -> dict:
        return await self._json("POST", "/auth-status")

    async def capabilities(self) -> dict:
        return await self._json("GET", "/v1/capabilities")

    async def create_song(self, *, idempotency_key: str | None = None, **fields: Unpack[SongFields]) -> Job:
        headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
        return await self._json("POST", "/v1/songs", json=song_body(fields), headers=headers)

    async def list_songs(self, *, limit: int | None = None, cursor: str | None = None,
                         status: str | list[str] | None = None, mode: str | list[str] | None = None) -> dict:
        params = drop_none({"limit": limit, "cursor": cursor, "status": _statuses(status), "mode": _statuses(mode)})
        return await self._json("GET", "/v1/songs", params=params)

    async def iter_songs(self, *, page_size: int = 50, status: str | list[str] | None = None,
                         mode: str | list[str] | None = None) -> AsyncIterator[Job]:
        cursor = None
        while True:
            page = await self.list_songs(limit=page_size, cursor=cursor, status=status, mode=mode)
            for item in page["items"]:
                yield item
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def get_song(self, job_id: str) -> Job:
        return await self._json("GET", f"/v1/songs/{job_id}")

    async def cancel(self, job_id: str) -> Job:
        return await self._json("POST", f"/v1/songs/{job_id}/cancel")

    async def delete(self, job_id: str) -> None:
        await self._request("DELETE", f"/v1/songs/{job_id}")

    async def edits(self, job_id: str, *, limit: int | None = None, cursor: str | None = None) -> dict:
        return await self._json("GET", f"/v1/songs/{job_id}/edits",
                                params=drop_none({"limit": limit, "cursor": cursor}))

    async def create_edit(self, task: EditTask, *, song_id: str | None = None, take: int | None = None,
                          upload_id: str | None = None, idempotency_key: str | None = None,
                          **fields: Unpack[EditFields]) -> Job:
        body = edit_body(task, edit_source(song_id, take, upload_id), fields)
        headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
        return await self._json("POST", "/v1/edits", json=body, headers=headers)

    async def upload(self, source: str | os.PathLike | bytes, *, filename: str | None = None,
                     content_type: str | None = None, presigned: bool | None = None) -> dict:
        data, name, ctype = await asyncio.to_thread(upload_payload, source, filename, content_type)
        if presigned or (presigned is None and not self._direct_uploads_only):
            try:
                slot = await self._json("POST", "/v1/uploads/presign")
            except SongsmithError as exc:
                if exc.status != 409 or presigned:
                    raise
                self._direct_uploads_only = True
            else:
                return await self._put_presigned(slot, data)
        return await self._json("POST", "/v1/uploads", params=drop_none({"filename": name}), content=data,
                                headers={"Content-Type": ctype})

    async def _put_presigned(self, slot: dict, data: bytes) -> dict:
        if len(data) > slot.get("max_bytes", len(data)):
            raise SongsmithError(413, f"the file is {len(data)} bytes; the server takes at most {slot['max_bytes']}")
        request = self._strip_foreign_auth(self._http.build_request(
            slot.get("method", "PUT"), slot["put_url"], content=data, headers={"Content-Type": slot["content_type"]}))
        try:
            r = await self._http.send(request)
        except httpx.TransportError as exc:
            raise SongsmithConnectionError(f"cannot reach the upload link's host: {exc}") from None
        if r.status_code >= 300:
            raise error_from(r.status_code, r.content, r.reason_phrase)
        return await self._json("POST", f"/v1/uploads/{slot['upload_id']}/complete")

    async def get_upload(self, upload_id: str) -> dict:
        return await self._json("GET", f"/v1/uploads/{upload_id}")

    async def delete_upload(self, upload_id: str) -> None:
        await self._request("DELETE", f"/v1/uploads/{upload_id}")

    async def events(self, job_id: str, after: int | None = None) -> AsyncIterator[SongEvent]:
        async for item in self._event_stream(job_id, after or 0):
            if item is not None:
                yield item

    async def _event_stream(self, job_id: str, last: int) -> AsyncIterator[SongEvent | None]:
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if last:
                headers["Last-Event-ID"] = str(last)
            try:
                async with self._http.stream("GET", f"/v1/songs/{job_id}/events", headers=headers,
                                             timeout=self.stream_timeout) as r:
                    if r.status_code >= 400:
                        err = error_from(r.status_code, await r.aread(), r.reason_phrase)
                        if r.status_code < 500:
                            raise err
                        problem: SongsmithError = err
                    else:
                        parser = SSEParser()
                        async for line in r.aiter_lines():
                            for item in parser.feed(line):
                                if item is KEEPALIVE:
                                    yield None
                                elif item.seq > last:
                                    last, failures = item.seq, 0
                                    yield item
                                    if item.terminal:
                                        return
                        problem = SongsmithConnectionError(f"the event stream of song {job_id} ended early")
            except httpx.TransportError as exc:
                problem = self._stream_problem(job_id, exc)
            failures += 1
            if failures > self.max_reconnects:
                raise problem
            await asyncio.sleep(self.backoff(failures))

    async def wait(self, job_id: str, *, timeout: float | None = None,
                   on_event: EventCallback | None = None) -> Job:
        """As Songsmith.wait; `on_event` may be a coroutine function."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        job = await self.get_song(job_id)
        if job["status"] in TERMINAL_STATUSES and on_event is None:
            return job
        try:
            stream = self._event_stream(job_id, 0)
            try:
                async for item in stream:
                    if item is not None and on_event is not None:
                        out = on_event(item)
                        if asyncio.iscoroutine(out):
                            await out
                    if item is not None and item.terminal:
                        return await self.get_song(job_id)
                    if deadline is not None and loop.time() > deadline:
                        raise WaitTimeout(job_id, timeout)
            finally:
                await stream.aclose()
        except SongsmithConnectionError:
            pass
        while True:
            job = await self.get_song(job_id)
            if job["status"] in TERMINAL_STATUSES:
                return job
            if deadline is not None and loop.time() > deadline:
                raise WaitTimeout(job_id, timeout)
            await asyncio.sleep(self.poll_interval_s)

    async def download(self, job: Job | str, directory: str | os.PathLike) -> Downloaded:
        if isinstance(job, str):
            job = await self.get_song(job)
        out = Downloaded(Path(directory))
        plan = download_plan(job)
        out.dir.mkdir(parents=True, exist_ok=True)
        urls, refreshed = {name: url for _, url, name in plan}, False
        for kind, _, name in plan:
            path = out.dir / name
            try:
                await self._fetch(urls[name], path)
            except SongsmithError as exc:
                if exc.status != 403 or refreshed:
                    raise
                refreshed, job = True, await self.get_song(job["id"])  # links expired: fresh ones, once
                urls = {name: url for _, url, name in download_plan(job)}
                await self._fetch(urls[name], path)
            record(out, kind, path)
        out.metadata = write_metadata(job, out.dir)
        return out

    async def _fetch(self, url: str, path: Path) -> None:
        request = self._strip_foreign_auth(self._http.build_request("GET", url, headers={"Accept": "*/*"}))
        try:
            r = await self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        try:
            if r.status_code >= 400:
                raise error_from(r.status_code, await r.aread(), r.reason_phrase)
            tmp = path.with_name(path.name + ".part")
            with tmp.open("wb") as fh:
                async for chunk in r.aiter_bytes():
                    fh.write(chunk)
            tmp.replace(path)
        except httpx.TransportError as exc:
            raise SongsmithConnectionError(f"download of {path.name} failed: {exc}") from None
        finally:
            await r.aclose()

    async def generate(self, *, on_event: EventCallback | None = None, timeout: float | None = None,
                       idempotency_key: str | None = None, **fields: Unpack[SongFields]) -> Job:
        job = await self.wait((await self.create_song(idempotency_key=idempotency_key, **fields))["id"],
                              timeout=timeout, on_event=on_event)
        if job["status"] != "succeeded":
            raise SongFailed(job)
        return job
