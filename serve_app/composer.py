"""One song, start to finish: every step starts as soon as its inputs exist.

    description ─┬─ tags ─────┬─ music ────┬─ upload audio ─┐
                 ├─ lyrics ───┘            │                ├─ manifest
                 ├─ title + categories ────┼────────────────┤
                 └─ (tags) ── cover ───────┴─ upload cover ─┘

Tags, lyrics, title and categories are one batched LLM call; with tags and lyrics given (the
lyrics endpoints), title, categories and cover start at once and run beside the music. A song's
latency is its critical path (LLM, then music, then the uploads), not the sum of steps.
Nothing is stored until the music exists: audio and cover upload together at the end, so a song
that fails or is cancelled earlier leaves no objects behind, and the manifest goes last (a song
with a manifest is complete).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable

from deployments.cover import CoverRequest, CoverResult, cover_prompt
from deployments.llm import Written
from deployments.lyrics_text import guess_language, normalize_user_lyrics, normalize_user_tags
from deployments.music import MusicRequest, MusicResult
from serve_app.metrics import song_metrics
from serve_app.schemas import GenerateFromDescription, GenerateWithDescribedLyrics, GenerateWithLyrics, SongOptions

logger = logging.getLogger("ray.serve")

SongBody = GenerateFromDescription | GenerateWithLyrics | GenerateWithDescribedLyrics


class SongFailed(RuntimeError):
    """A stage failed; the message names the stage and is safe to show to the caller.

    `retryable` marks failures of the machinery (a replica process died, storage unreachable)
    that another attempt can get past; an engine's own error (bad input, out of memory) is final.
    """

    def __init__(self, stage: str, message: str, *, retryable: bool = False):
        super().__init__(f"{stage} failed: {message}")
        self.stage = stage
        self.retryable = retryable

    @classmethod
    def wrap(cls, stage: str, exc: BaseException) -> SongFailed:
        return cls(stage, _safe(exc), retryable=_transient(exc))


def _transient(exc: BaseException) -> bool:
    from ray import exceptions as rx
    from ray.serve import exceptions as sx

    from serve_app.storage import StorageError

    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, rx.RayActorError | rx.ActorUnavailableError | rx.ActorUnschedulableError
                      | rx.NodeDiedError | rx.ObjectLostError | sx.BackPressureError):
            return True
        if type(exc).__name__ == "DeploymentUnavailableError":
            return True
        if isinstance(exc, StorageError) and getattr(exc, "code", "") in ("unreachable", "io", "error"):
            return True
        exc = getattr(exc, "cause", None) or exc.__cause__
        seen += 1
    return False


@dataclass
class Stages:
    """Wall-clock intervals of each stage, relative to the song's start."""

    t0: float = field(default_factory=time.time)
    spans: dict[str, tuple[float, float]] = field(default_factory=dict)

    def record(self, name: str, started: float, finished: float) -> None:
        self.spans[name] = (started - self.t0, finished - self.t0)

    def public(self) -> dict[str, dict[str, float]]:
        return {
            k: {"start_s": round(a, 4), "end_s": round(b, 4), "seconds": round(b - a, 4)}
            for k, (a, b) in sorted(self.spans.items(), key=lambda kv: kv[1][0])
        }


class SongObserver:
    """Hears a song's progress: the job runner persists it, the sync path ignores it."""

    async def stage(self, name: str) -> None:
        """Critical-path stages: writing, painting, composing, encoding, uploading."""

    async def progress(self, step: int, total: int) -> None:
        """Diffusion step `step` of `total` finished."""


class SongComposer:
    """Drives the model deployments and the object store for one song at a time (many concurrently)."""

    def __init__(self, llm, music, cover, store, *, key_prefix: str = "songs"):
        self.llm, self.music, self.cover, self.store = llm, music, cover, store
        self.music_stream = music.options(stream=True)
        self.key_prefix = key_prefix.strip("/")
        self._in_flight = 0

    def keys(self, song_id: str, extension: str) -> dict[str, str]:
        base = f"{self.key_prefix}/{song_id}"
        return {"audio": f"{base}/audio.{extension}", "cover": f"{base}/cover.png", "manifest": f"{base}/manifest.json"}

    async def compose(
        self, body: SongBody, *, song_id: str | None = None, observer: SongObserver | None = None
    ) -> dict[str, Any]:
        song_id = song_id or uuid.uuid4().hex
        observer = observer or SongObserver()
        stages = Stages()
        tasks: list[asyncio.Task] = []
        metrics = song_metrics()
        mode = type(body).__name__
        self._in_flight += 1
        metrics.in_flight.set(self._in_flight)
        try:
            result = await self._compose(body, song_id, stages, tasks, observer)
            metrics.song_finished("succeeded", mode, stages.spans, result["duration_s"])
            logger.info("song %s finished in %.2fs", song_id, stages.spans["total"][1], extra={"song_id": song_id})
            return result
        except BaseException as exc:
            outcome = "cancelled" if isinstance(exc, asyncio.CancelledError) else "failed"
            metrics.song_finished(outcome, mode, stages.spans, 0.0)
            logger.warning("song %s %s: %s", song_id, outcome, _safe(exc), extra={"song_id": song_id})
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if isinstance(exc, asyncio.CancelledError):
                # The caller decides: a cancelled song is cleaned up, but one whose lease moved to
                # another worker must not have that worker's objects deleted under it.
                raise
            await self.remove_partial(song_id)
            if isinstance(exc, SongFailed):
                raise
            raise SongFailed.wrap("song", exc) from exc
        finally:
            self._in_flight -= 1
            metrics.in_flight.set(self._in_flight)

    async def _compose(
        self, body: SongBody, song_id: str, stages: Stages, tasks: list, observer: SongObserver
    ) -> dict[str, Any]:
        opts: SongOptions = body
        instrumental = opts.instrumental

        def spawn(coro: Awaitable) -> asyncio.Task:
            task = asyncio.ensure_future(coro)
            tasks.append(task)
            return task

        # 1. Words: whatever the request did not provide, the LLM writes (concurrently).
        if isinstance(body, GenerateFromDescription | GenerateWithDescribedLyrics):
            await observer.stage("writing")
        if isinstance(body, GenerateFromDescription):
            description = body.full_described_song
            tags_t = spawn(self._stage(stages, "tags", self.llm.tags.remote(description, instrumental)))
            lyrics_t = (
                None if instrumental else spawn(self._stage(stages, "lyrics", self.llm.lyrics.remote(description)))
            )
            # Title and categories need only the description: they ride in the same LLM batch.
            meta_t = spawn(self._stage(stages, "meta", self.llm.meta.remote(description, [])))
            tags: list[str] = (await tags_t).tags
        else:
            description = body.prompt if isinstance(body, GenerateWithLyrics) else body.described_lyrics
            tags = normalize_user_tags(body.prompt, instrumental)
            meta_t = spawn(self._stage(stages, "meta", self.llm.meta.remote(description, tags)))
            lyrics_t = None
            if not instrumental and isinstance(body, GenerateWithDescribedLyrics):
                lyrics_t = spawn(self._stage(stages, "lyrics", self.llm.lyrics.remote(body.described_lyrics)))

        # 2. Cover art needs only the tags: start it before the lyrics finish.
        await observer.stage("painting")
        cover_t = spawn(self._stage(stages, "cover", self.cover.generate.remote(
            CoverRequest(prompt=cover_prompt(", ".join(tags[:8]))))))

        if instrumental:
            lyrics = ""
        elif lyrics_t is not None:
            lyrics = (await lyrics_t).lyrics
        else:
            lyrics = normalize_user_lyrics(body.lyrics)

        # 3. Music, the long pole, as soon as tags and lyrics exist; then its upload.
        music_req = MusicRequest(
            tags=", ".join(tags),
            lyrics=lyrics,
            instrumental=instrumental or not lyrics,
            duration_s=opts.audio_duration,
            steps=opts.infer_step,
            guidance_scale=opts.guidance_scale,
            seed=opts.seed,
            audio_format=opts.audio_format,
            vocal_language=guess_language(lyrics) if lyrics else "en",
        )
        await observer.stage("composing")
        music = await self._music(stages, music_req, song_id, observer)
        keys = self.keys(song_id, music.extension)
        cover: CoverResult = await cover_t
        await observer.stage("uploading")
        await asyncio.gather(
            self._upload(stages, "upload_audio", keys["audio"], music.audio, music.content_type),
            self._upload(stages, "upload_cover", keys["cover"], cover.png, "image/png"),
        )
        meta: Written = await meta_t

        result = {
            "r2_key": keys["audio"],
            "cover_image_r2_key": keys["cover"],
            "categories": meta.categories,
            "song_id": song_id,
            "manifest_r2_key": keys["manifest"],
            "title": meta.title,
            "tags": tags,
            "lyrics": lyrics,
            "instrumental": instrumental,
            "seed": music.seed,
            "duration_s": round(music.duration_s, 4),
            "sample_rate": music.sample_rate,
            "audio_format": music.audio_format,
            "infer_step": music.steps,
            "guidance_scale": music.guidance_scale,
            "notes": music.notes,
        }
        manifest = {
            "song_id": song_id,
            "created_at": stages.t0,
            "request": {"endpoint": type(body).__name__, **body.model_dump()},
            "llm": {"model": meta.model, "tags": tags, "lyrics": lyrics, "title": meta.title,
                    "categories": meta.categories, "raw": {"meta": meta.raw}},
            "music": {"model": music.model, "seed": music.seed, "steps": music.steps,
                      "guidance_scale": music.guidance_scale, "sample_rate": music.sample_rate,
                      "channels": music.channels, "num_samples": music.num_samples,
                      "vocal_language": music_req.vocal_language, "notes": music.notes},
            "cover": {"model": cover.model, "seed": cover.seed, "steps": cover.steps, "prompt": cover.prompt,
                      "width": cover.width, "height": cover.height},
            "result": result,
        }
        manifest["timings"] = stages.public()
        await self._upload(stages, "upload_manifest", keys["manifest"], json.dumps(manifest, indent=2).encode(),
                           "application/json")
        stages.record("total", stages.t0, time.time())
        result["timings"] = stages.public()
        return result

    async def _music(self, stages: Stages, req: MusicRequest, song_id: str, observer: SongObserver) -> MusicResult:
        """Stream the render: progress after every step; cancelling this task cancels the render."""
        sent = time.time()
        stream = self.music_stream.generate_stream.remote(req, song_id)
        result: MusicResult | None = None
        try:
            async for kind, payload in stream:
                if kind == "progress":
                    step, total = payload
                    await observer.progress(step, total)
                    if step == total:
                        await observer.stage("encoding")
                else:
                    result = payload
        except asyncio.CancelledError:
            stream.cancel()
            raise
        except Exception as exc:  # noqa: BLE001
            raise SongFailed.wrap("music", exc) from exc
        if result is None:
            raise SongFailed("music", "the music deployment returned no audio")
        stages.record("music", result.started_at or sent, result.finished_at or time.time())
        return result

    async def _stage(self, stages: Stages, name: str, call: Any) -> Any:
        """Await one deployment call; record the interval the deployment itself reported."""
        sent = time.time()
        try:
            out = await call
        except asyncio.CancelledError:
            call.cancel()  # tell the replica, not just this coroutine
            raise
        except Exception as exc:  # noqa: BLE001 - every stage failure becomes a named, safe error
            raise SongFailed.wrap(name, exc) from exc
        started = getattr(out, "started_at", 0.0) or sent
        finished = getattr(out, "finished_at", 0.0) or time.time()
        stages.record(name, started, finished)
        return out

    async def _upload(self, stages: Stages, name: str, key: str, data: bytes, content_type: str) -> None:
        t = time.time()
        try:
            await self.store.put(key, data, content_type)
        except Exception as exc:  # noqa: BLE001
            raise SongFailed.wrap("upload", exc) from exc
        stages.record(name, t, time.time())

    async def remove_partial(self, song_id: str) -> None:
        """Delete whatever a song that did not finish left under its prefix (best effort)."""
        try:
            await self.store.delete_prefix(f"{self.key_prefix}/{song_id}/")
        except Exception as exc:  # noqa: BLE001
            logger.warning("could not remove partial outputs of song %s: %s", song_id, _safe(exc))


def _safe(exc: BaseException) -> str:
    """An exception's message for callers: the root cause's type and first line, cut short.

    Ray wraps a replica's exception in RayTaskError (with a traceback and ANSI colours); the
    caller wants the engine's own words, e.g. "EngineError: out of GPU memory ...".
    """
    from ray.exceptions import RayTaskError

    for _ in range(5):
        cause = getattr(exc, "cause", None)
        if isinstance(exc, RayTaskError) and cause is not None:
            exc = cause
        else:
            break
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first[:300]}" if first else type(exc).__name__
