"""What a caller sees of a job or a song: stored records plus fresh, short-lived links."""

from __future__ import annotations

from fastapi import Request

from serve_app.api.deps import Services, off_loop
from serve_app.api.schemas import SongJobPublic, SongPublic
from serve_app.jobs.records import Job


def absolute(url: str, request: Request) -> str:
    return str(request.base_url).rstrip("/") + url if url.startswith("/") else url


def song_public(result: dict, request: Request, svc: Services) -> SongPublic:
    song = dict(result)
    song["audio_url"] = absolute(svc.store.signed_url(song["r2_key"], svc.url_ttl_s), request)
    song["cover_image_url"] = absolute(svc.store.signed_url(song["cover_image_r2_key"], svc.url_ttl_s), request)
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
