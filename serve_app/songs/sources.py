"""What an edit starts from: a finished song of the caller's (one take of it) or an upload.

Uploads are checked before they cost GPU time (decoded with the project's audio stack, refused
when empty, corrupt, too long or in a format it cannot read), then stored at the model's sample
rate as FLAC under the owner's folder, beside a small JSON record:

    uploads/<owner digest>/<upload id>/audio.flac
    uploads/<owner digest>/<upload id>/upload.json
    uploads/<owner digest>/<upload id>/incoming   a presigned PUT's raw file, until it is checked

The owner is part of every key, so another token's upload id finds nothing (a 404, like a song).
A source resolves to a dict stored in the edit's job request: its audio key and length, and for a
song its cover, title, categories, tags and lyrics, which the edit inherits unless it gives its own.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from deployments.audio_codec import encode, load_source, probe
from serve_app.storage import ObjectNotFound, ObjectStore

UPLOAD_PREFIX = "uploads"
UPLOAD_SAMPLE_RATE = 48_000  # ACE-Step's rate; uploads are stored at it
MIN_UPLOAD_S = 1.0


class UploadError(ValueError):
    """Why an upload was refused, in words for the caller (no paths, no library internals)."""


def upload_folder(owner: str, upload_id: str) -> str:
    return f"{UPLOAD_PREFIX}/{owner}/{upload_id}/"


def _check_audio(data: bytes, max_s: float) -> tuple[Any, dict[str, Any]]:
    """Decode and resample (blocking: run off the event loop). Returns (audio, original info)."""
    if not data:
        raise UploadError("the file is empty")
    try:
        duration_s, rate, channels, fmt = probe(data)
    except ValueError as exc:
        raise UploadError(str(exc)) from None
    if duration_s > max_s:
        raise UploadError(f"the audio is {duration_s:.1f} s long; at most {max_s:g} s is accepted")
    if duration_s < MIN_UPLOAD_S:
        raise UploadError(f"the audio is {duration_s:.2f} s long; at least {MIN_UPLOAD_S:g} s is needed")
    try:
        audio = load_source(data, UPLOAD_SAMPLE_RATE, max_seconds=max_s)
    except ValueError as exc:
        raise UploadError(str(exc)) from None
    return audio, {"format": fmt, "sample_rate": rate, "channels": channels, "duration_s": round(duration_s, 4)}


async def store_upload(store: ObjectStore, owner: str, data: bytes, *, filename: str | None,
                       max_s: float, upload_id: str | None = None) -> dict[str, Any]:
    """Check an uploaded file and store it; returns its record (the API's UploadPublic)."""
    audio, original = await asyncio.to_thread(_check_audio, data, max_s)
    flac = await asyncio.to_thread(encode, audio, UPLOAD_SAMPLE_RATE, "flac")
    upload_id = upload_id or uuid.uuid4().hex
    folder = upload_folder(owner, upload_id)
    record = {
        "upload_id": upload_id,
        "duration_s": round(audio.shape[1] / UPLOAD_SAMPLE_RATE, 4),
        "sample_rate": UPLOAD_SAMPLE_RATE,
        "channels": int(audio.shape[0]),
        "original": {**original, "bytes": len(data), "filename": filename},
        "created_at": time.time(),
        "key": folder + "audio.flac",
    }
    await store.put(record["key"], flac, "audio/flac")
    await store.put(folder + "upload.json", json.dumps(record).encode(), "application/json")
    return record


def incoming_key(owner: str, upload_id: str) -> str:
    return upload_folder(owner, upload_id) + "incoming"


def new_upload_id() -> str:
    return uuid.uuid4().hex


async def finish_presigned(store: ObjectStore, owner: str, upload_id: str, *, max_s: float,
                           max_bytes: int) -> dict[str, Any] | None:
    """Check the file a presigned PUT left and store it like a direct upload (None: nothing was
    PUT under this id). The raw file is removed either way, so a refused one does not linger."""
    key = incoming_key(owner, upload_id)
    try:
        info = await store.head(key)
    except ObjectNotFound:
        return None
    try:
        if info.size > max_bytes:
            raise UploadError(f"the file is {info.size} bytes; at most {max_bytes} are accepted")
        data = await store.get(key)
        return await store_upload(store, owner, data, filename=None, max_s=max_s, upload_id=upload_id)
    finally:
        await store.delete(key)


async def get_upload(store: ObjectStore, owner: str, upload_id: str) -> dict[str, Any] | None:
    try:
        return json.loads(await store.get(upload_folder(owner, upload_id) + "upload.json"))
    except ObjectNotFound:
        return None


async def delete_upload(store: ObjectStore, owner: str, upload_id: str) -> bool:
    """True when there was such an upload."""
    return await store.delete_prefix(upload_folder(owner, upload_id)) > 0


def song_source(result: dict[str, Any], song_id: str, take: int) -> dict[str, Any]:
    """The source record of take `take` of a finished song (its stored result)."""
    takes = result.get("takes") or [{"take": 0, "r2_key": result["r2_key"], "duration_s": result["duration_s"]}]
    pick = takes[take]
    return {
        "song_id": song_id, "take": take, "key": pick["r2_key"], "duration_s": float(pick["duration_s"]),
        "cover_key": result.get("cover_image_r2_key"), "title": result.get("title"),
        "categories": list(result.get("categories") or []), "tags": ", ".join(result.get("tags") or []),
        "lyrics": result.get("lyrics") or "", "instrumental": bool(result.get("instrumental")),
    }


def upload_source(record: dict[str, Any]) -> dict[str, Any]:
    return {"upload_id": record["upload_id"], "key": record["key"], "duration_s": float(record["duration_s"])}
