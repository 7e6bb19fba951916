"""What the sync and the async client share: settings, errors, SSE parsing, request bodies and
the download plan. Standard library only (httpx is imported by client.py), so nothing here
pulls in the server's packages."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "SONGSMITH_URL"
TOKEN_ENV = "SONGSMITH_TOKEN"
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
METADATA_FILE = "song.json"
AUDIO_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg", ".ogg": "audio/ogg",
               ".oga": "audio/ogg", ".opus": "audio/ogg"}


# A proxy's 500/502/504 (an ingress replica killed with the request in flight: docs/reliability.md)
# or a 503 (the job store briefly away) says nothing about whether the request took effect; it
# is replayed only when that is safe: reads and deletes, and POSTs with an Idempotency-Key.
RETRY_STATUSES = frozenset({500, 502, 503, 504})
REPLAYABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
MAX_RETRY_AFTER_S = 30.0


def replayable(method: str, headers: Mapping[str, str] | None) -> bool:
    return method.upper() in REPLAYABLE_METHODS or any(k.lower() == "idempotency-key" for k in (headers or {}))


def retry_delay_s(retry: int, base_s: float, retry_after: str | None = None) -> float:
    """The wait before retry number `retry` (1, 2, ...): the server's Retry-After seconds when it
    sent some (capped), else exponential from `base_s`."""
    if retry_after:
        try:
            return min(MAX_RETRY_AFTER_S, max(0.0, float(retry_after)))
        except ValueError:
            pass  # an HTTP date: use our own backoff
    return min(8.0, base_s * 2 ** (retry - 1))


def new_idempotency_key() -> str:
    """One per create call, so the call's own retries cannot make a second song."""
    import uuid

    return f"songsmith-client-{uuid.uuid4().hex}"


class SongsmithError(Exception):
    """The server refused a request (`status` is the HTTP status, `message` the server's own
    words), or, with `status` None, the client could not do what was asked."""

    def __init__(self, status: int | None, message: str, *, detail: Any = None, job: dict | None = None):
        super().__init__(f"{status}: {message}" if status is not None else message)
        self.status, self.message, self.detail, self.job = status, message, detail, job


class SongsmithConnectionError(SongsmithError):
    """The server could not be reached (or the connection kept dropping): no HTTP status."""

    def __init__(self, message: str):
        super().__init__(None, message)


class SongFailed(SongsmithError):
    """A song that ended failed or cancelled where a finished one was needed; `job` is the job."""

    def __init__(self, job: dict):
        why = job.get("error") or job["status"]
        super().__init__(None, f"song {job['id']} {job['status']}: {why}", job=job)


def resolve_settings(base_url: str | None, token: str | None) -> tuple[str, str | None]:
    """Arguments first, then SONGSMITH_URL / SONGSMITH_TOKEN, then the local dev default."""
    url = (base_url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"the Songsmith URL must start with http:// or https://, not {url!r}")
    return url, token if token is not None else (os.environ.get(TOKEN_ENV) or None)


def error_from(status: int, body: bytes, reason: str = "") -> SongsmithError:
    """The server's `{"detail", "message"}` as a SongsmithError (or the raw text of a non-JSON body)."""
    try:
        data = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return SongsmithError(status, text[:500] or reason or f"HTTP {status}")
    if isinstance(data, dict):
        message = data.get("message")
        if not isinstance(message, str):
            detail = data.get("detail")
            message = detail if isinstance(detail, str) else json.dumps(data)[:500]
        return SongsmithError(status, message, detail=data.get("detail"))
    return SongsmithError(status, json.dumps(data)[:500])


def same_origin(a: str, b: str) -> bool:
    x, y = urlsplit(a), urlsplit(b)
    return (x.scheme, x.hostname, x.port) == (y.scheme, y.hostname, y.port)


# ---------------------------------------------------------------- server-sent events


@dataclass(frozen=True)
class SongEvent:
    """One event of a job's stream: `seq` (the SSE id), `type` (status, stage, progress,
    cancel_requested), its `data` and when it happened."""

    seq: int
    type: str
    data: dict[str, Any]
    created_at: str | None = None

    @property
    def terminal(self) -> bool:
        return self.type == "status" and self.data.get("status") in TERMINAL_STATUSES


KEEPALIVE = object()  # what the parser yields for a `: comment` line (the server's keep-alive)


class SSEParser:
    """Line-by-line Server-Sent Events parser (WHATWG rules for the fields this API sends).

    Feed it lines without their line ending; it yields a SongEvent at each blank line that ends a
    complete event, and KEEPALIVE for comment lines. A half-received event is never yielded."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._id: str | None = None
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> Iterator[SongEvent | object]:
        if line == "":
            if self._data or self._id is not None:
                event = self._build()
                self._reset()
                if event is not None:
                    yield event
            return
        if line.startswith(":"):
            yield KEEPALIVE
            return
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "id":
            self._id = value
        elif name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)

    def _build(self) -> SongEvent | None:
        raw = "\n".join(self._data)
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            payload = {"data": {"raw": raw}}
        if not isinstance(payload, dict):
            payload = {"data": {"raw": payload}}
        seq = payload.get("seq")
        if self._id is not None and self._id.isdigit():
            seq = int(self._id)
        if not isinstance(seq, int):
            return None  # an event without an id cannot be resumed from: not one of ours
        data = payload.get("data")
        return SongEvent(seq=seq, type=payload.get("type") or self._event,
                         data=data if isinstance(data, dict) else {"value": data},
                         created_at=payload.get("created_at"))


# ---------------------------------------------------------------- request bodies


def drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


SONG_FIELDS = ("full_described_song", "prompt", "lyrics", "described_lyrics", "audio_duration", "seed",
               "infer_step", "guidance_scale", "instrumental", "audio_format", "variations", "bpm", "keyscale",
               "timesignature", "vocal_language", "webhook_url")
EDIT_TASKS = ("cover", "repaint", "extend", "extract", "lego", "complete")


def song_body(fields: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(SONG_FIELDS)
    if unknown:
        raise TypeError(f"unknown song field(s): {', '.join(sorted(unknown))}")
    return drop_none(fields)


def edit_body(task: str, source: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    if task not in EDIT_TASKS:
        raise ValueError(f"task must be one of {', '.join(EDIT_TASKS)}, not {task!r}")
    return {"task": task, "source": drop_none(source), **drop_none(fields)}


def edit_source(song_id: str | None = None, take: int | None = None, upload_id: str | None = None) -> dict:
    if (song_id is None) == (upload_id is None):
        raise ValueError("give exactly one of song_id or upload_id")
    return {"song_id": song_id, "take": take} if song_id is not None else {"upload_id": upload_id}


def upload_payload(source: str | os.PathLike | bytes, filename: str | None,
                   content_type: str | None) -> tuple[bytes, str | None, str]:
    """(bytes, filename, content type) of an upload given as a path or as bytes."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SongsmithError(None, f"cannot read {path}: {exc.strerror or exc}") from None
        filename = filename or path.name
    ctype = content_type or AUDIO_TYPES.get(Path(filename or "").suffix.lower(), "application/octet-stream")
    return data, filename, ctype


# ---------------------------------------------------------------- downloads


@dataclass
class Downloaded:
    """Where a song's files went: every take's audio (take 0 first), the cover, the stored
    manifest (manifest.json, as the service wrote it) and song.json (the job record)."""

    dir: Path
    audio: list[Path] = field(default_factory=list)
    cover: Path | None = None
    manifest: Path | None = None
    metadata: Path | None = None

    @property
    def files(self) -> list[Path]:
        return [*self.audio, *(p for p in (self.cover, self.manifest, self.metadata) if p)]

    def to_dict(self) -> dict[str, Any]:
        return {"dir": str(self.dir), "audio": [str(p) for p in self.audio],
                "cover": str(self.cover) if self.cover else None,
                "manifest": str(self.manifest) if self.manifest else None,
                "metadata": str(self.metadata) if self.metadata else None,
                "files": [str(p) for p in self.files]}


def _safe_name(key: str, fallback: str) -> str:
    name = PurePosixPath(key or "").name
    return name if name and name not in (".", "..") and "\\" not in name else fallback


def download_plan(job: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(kind, url, file name) of each file of a succeeded job: takes' audio, the cover, the manifest
    (servers before manifest_url had none to give)."""
    if job.get("status") != "succeeded" or not job.get("result"):
        raise SongFailed(dict(job)) if job.get("status") in TERMINAL_STATUSES else SongsmithError(
            None, f"song {job.get('id')} is {job.get('status')}; only a succeeded song can be downloaded",
            job=dict(job))
    result = job["result"]
    ext = result.get("audio_format") or "wav"
    takes = result.get("takes") or [{"take": 0, "r2_key": result.get("r2_key", ""), "audio_url": result["audio_url"]}]
    plan = [("audio", t["audio_url"], _safe_name(t.get("r2_key", ""), f"take-{t.get('take', k)}.{ext}"))
            for k, t in enumerate(takes)]
    if result.get("cover_image_url"):
        plan.append(("cover", result["cover_image_url"], _safe_name(result.get("cover_image_r2_key", ""), "cover.png")))
    if result.get("manifest_url"):
        plan.append(("manifest", result["manifest_url"], _safe_name(result.get("manifest_r2_key", ""), "manifest.json")))
    return plan


def write_metadata(job: Mapping[str, Any], directory: Path) -> Path:
    path = directory / METADATA_FILE
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(job, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def record(downloaded: Downloaded, kind: str, path: Path) -> None:
    if kind == "audio":
        downloaded.audio.append(path)
    elif kind == "manifest":
        downloaded.manifest = path
    else:
        downloaded.cover = path


def song_mode_fields(description: str | None = None, tags: str | None = None, lyrics: str | None = None,
                     described_lyrics: str | None = None) -> dict[str, str]:
    """The mode fields of a song from what a person gives (the CLI's and the MCP tool's rules):

    - a description alone: the LLM writes tags, lyrics, title (`full_described_song`);
    - lyrics: sung as written, with `tags` (or else the description) as the tags;
    - described_lyrics: the LLM writes lyrics about it, with `tags` (or the description) as tags;
    - tags and a description: the LLM writes lyrics about the description;
    - tags alone: no words (add instrumental for no vocals at all)."""
    if lyrics is not None and described_lyrics is not None:
        raise ValueError("give lyrics or described lyrics, not both")
    if lyrics is not None or described_lyrics is not None:
        if tags and description:
            raise ValueError("with tags and lyrics (or a lyrics description) there is no use for a description: "
                             "drop one")
        prompt = tags or description
        if not prompt:
            raise ValueError("lyrics need tags (or a description to use as the tags)")
        return {"prompt": prompt, **({"lyrics": lyrics} if lyrics is not None else
                                     {"described_lyrics": described_lyrics})}
    if tags:
        return {"prompt": tags, **({"described_lyrics": description} if description else {})}
    if not description:
        raise ValueError("describe the song (or give tags)")
    return {"full_described_song": description}
