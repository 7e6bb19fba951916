"""What a caller sees of a job or a song: stored records plus fresh, short-lived links."""

from __future__ import annotations

import ipaddress

from fastapi import Request
from fastapi.responses import JSONResponse

from serve_app.api.deps import Services, off_loop
from serve_app.api.schemas import SongJobPublic, SongPublic
from serve_app.jobs.records import Job

DEFAULT_PORTS = {"http": 80, "https": 443}


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def absolute(url: str, request: Request) -> str:
    """A link of the server's own (`/files/...`) as callers get it. Never from the request's Host
    header (or X-Forwarded-Host): whoever can forge one would get links to their own server.

    Storage gives absolute links when `storage.public_base_url` is configured (do that whenever
    callers are not on this machine). Otherwise: the address the connection was accepted on
    when that is loopback (a dev stack: http://127.0.0.1:8000/files/...), else the relative
    link (`/files/...`, resolved against the API's URL by browsers and the client), so that no
    internal address is handed out either."""
    if not url.startswith("/"):
        return url
    server = request.scope.get("server")
    if not server or not server[0] or not _loopback(str(server[0])):
        return url
    host, port = str(server[0]), server[1]
    scheme = request.scope.get("scheme") or "http"
    netloc = f"[{host}]" if ":" in host else host
    if port and port != DEFAULT_PORTS.get(scheme):
        netloc += f":{port}"
    return f"{scheme}://{netloc}{url}"


def song_public(result: dict, request: Request, svc: Services) -> SongPublic:
    song = dict(result)
    song["audio_url"] = absolute(svc.store.signed_url(song["r2_key"], svc.url_ttl_s), request)
    song["cover_image_url"] = absolute(svc.store.signed_url(song["cover_image_r2_key"], svc.url_ttl_s), request)
    if song.get("manifest_r2_key"):
        song["manifest_url"] = absolute(svc.store.signed_url(song["manifest_r2_key"], svc.url_ttl_s), request)
    song["links_expire_in_s"] = svc.url_ttl_s
    takes = song.get("takes") or [{"take": 0, "seed": song["seed"], "r2_key": song["r2_key"],
                                   "duration_s": song["duration_s"]}]
    song["takes"] = [{**t, "audio_url": song["audio_url"] if t["r2_key"] == song["r2_key"]
                      else absolute(svc.store.signed_url(t["r2_key"], svc.url_ttl_s), request)} for t in takes]
    return SongPublic.model_validate(song)


async def job_public(job: Job, request: Request, svc: Services) -> SongJobPublic:
    data = job.public()
    if job.result:
        data["result"] = song_public(job.result, request, svc)
    if job.status == "queued":
        data["queue_position"] = await off_loop(svc.jobs.queue_position, job.id)
    return SongJobPublic.model_validate(data)


async def accepted(job: Job, created: bool, request: Request, svc: Services) -> JSONResponse:
    """A submitted job: 202 when new, 200 when an Idempotency-Key replayed it; Location either way."""
    public = await job_public(job, request, svc)
    return JSONResponse(status_code=202 if created else 200, content=public.model_dump(mode="json"),
                        headers={"Location": f"/v1/songs/{job.id}"})
