"""One song, start to finish: a small graph of steps, each started as soon as its inputs exist.

    tags ──────┬─ cover ───────────┬─ upload ─┬─ manifest
    lyrics ────┴─ music (streamed) ┘          │
    (source) ──┘                              │
    meta (title + categories) ────────────────┘

An edit (cover/repaint/extend/... of a previous song or an upload) adds a `source` step that reads
the source audio from storage; an edit of a song keeps that song's cover and names its title.
Takes (`variations`) share the words and the cover and come back from one music call.
`plan(task)` says what each step does for this task: the LLM writes the tags, lyrics or neither
(the caller gave them), and meta always asks the LLM for a title and categories. Tags, lyrics and
meta run side by side (one LLM batch on a GPU); cover starts as soon as the tags exist, music as
soon as the tags and lyrics do. A song's latency is its critical path (LLM, then music, then the
uploads), not the sum of its steps.

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from deployments.lyrics_text import guess_language, normalize_user_lyrics, normalize_user_tags
from deployments.cover import cover_prompt
from deployments.protocol import CoverRequest, CoverResult, MusicRequest, MusicResult, Written
from serve_app.songs import layout
from serve_app.songs.controls import proposed_controls
from serve_app.songs.failures import SongFailed, safe_message
from serve_app.songs.handles import ModelHandles
from serve_app.songs.observer import Observers, SongObserver, Stages
from serve_app.songs.result import SongResult
from serve_app.songs.task import SongTask

logger = logging.getLogger("ray.serve")

COVER_TAGS = 8  # the cover prompt reads the first few tags (CLIP reads at most 77 tokens)


@dataclass
class Words:
    tags: list[str]
    lyrics: str
    meta: Written


@dataclass
class Song:
    """One song in the making: its task, what each finished step produced, and its timings."""

    id: str
    task: SongTask
    observer: SongObserver
    stages: Stages = field(default_factory=Stages)
    done: dict[str, Any] = field(default_factory=dict)
    entered: set[str] = field(default_factory=set)
    music_request: MusicRequest | None = None

    async def enter(self, stage: str) -> None:
        """Report a stage once, however many steps start in it."""
        if stage not in self.entered:
            self.entered.add(stage)
            await self.observer.stage(stage)


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[Song], Awaitable[Any]]
    needs: tuple[str, ...] = ()
    stage: str | None = None  # the job stage this step puts the song in when it starts


def words_seed(task: SongTask) -> int | None:
    """The song's seed drives its words too (a random seed was fixed per job by the runner)."""
    return task.options.seed if task.options.seed >= 0 else None


class SongComposer:
    """Drives the models and the object store for one song at a time (many concurrently)."""

    def __init__(self, models: ModelHandles, store, *, key_prefix: str = "songs",
                 observers: tuple[SongObserver, ...] = ()):
        self.models, self.store = models, store
        self.key_prefix = key_prefix.strip("/")
        self.observers = observers  # always told (metrics), before the caller's own observer

    # -- the plan --

    def plan(self, task: SongTask) -> list[Step]:
        """The steps this task needs, in the order they start when ready together."""
        writes_lyrics = task.lyrics_about is not None and not task.options.instrumental
        edit = task.edit is not None
        return [
            Step("tags", self._tags, stage="writing" if task.describe is not None else None),
            Step("lyrics", self._lyrics, stage="writing" if writes_lyrics else None),
            *([Step("source", self._source)] if edit else []),
            # Meta reads the caller's tags (ready at once); it never waits for the tags the LLM writes.
            Step("meta", self._meta, needs=("tags",) if task.describe is None else ()),
            Step("cover", self._cover, needs=("tags",), stage="painting"),
            Step("music", self._music, needs=("tags", "lyrics", *(("source",) if edit else ())), stage="composing"),
            Step("upload", self._upload_media, needs=("music", "cover"), stage="uploading"),
            Step("manifest", self._manifest, needs=("upload", "meta")),
        ]

    async def compose(self, task: SongTask, *, song_id: str | None = None,
                      observer: SongObserver | None = None) -> SongResult:
        song = Song(song_id or uuid.uuid4().hex, task, Observers(*self.observers, observer))
        mode = task.mode.value
        song.observer.started(mode)
        running: dict[asyncio.Task, Step] = {}
        try:
            result = await self._run(self.plan(task), song, running)
            song.observer.finished("succeeded", mode, song.stages, result.duration_s)
            logger.info("song %s finished in %.2fs", song.id, song.stages.spans["total"][1],
                        extra={"song_id": song.id})
            return result
        except BaseException as exc:
            outcome = "cancelled" if isinstance(exc, asyncio.CancelledError) else "failed"
            song.observer.finished(outcome, mode, song.stages, 0.0)
            logger.warning("song %s %s: %s", song.id, outcome, safe_message(exc), extra={"song_id": song.id})
            for t in running:
                t.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            if isinstance(exc, asyncio.CancelledError):
                # The caller decides: a cancelled song is cleaned up, but one whose lease moved to
                # another worker must not have that worker's objects deleted under it.
                raise
            await self.remove_partial(song.id)
            if isinstance(exc, SongFailed):
                raise
            raise SongFailed.wrap("song", exc) from exc

    async def _run(self, steps: list[Step], song: Song, running: dict[asyncio.Task, Step]) -> SongResult:
        """Start every step whose needs are done (in plan order), wait for the next to finish, repeat."""
        waiting = list(steps)
        while waiting or running:
            for step in [s for s in waiting if all(n in song.done for n in s.needs)]:
                waiting.remove(step)
                if step.stage:
                    await song.enter(step.stage)
                running[asyncio.ensure_future(step.run(song))] = step
            if not running:
                raise RuntimeError(f"steps {[s.name for s in waiting]} wait for steps that are not planned")
            finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(finished, key=lambda t: steps.index(running[t])):
                song.done[running.pop(task).name] = task.result()  # a failed step raises here
        return song.done["manifest"]

    # -- the steps --

    async def _tags(self, song: Song) -> list[str]:
        task = song.task
        if task.describe is None:
            return normalize_user_tags(task.tags or "", task.options.instrumental)
        written = await self._timed(song, "tags", self.models.tags(task.describe, task.options.instrumental,
                                                                   seed=words_seed(task)))
        return written.tags

    async def _lyrics(self, song: Song) -> str:
        task = song.task
        if task.options.instrumental:
            return ""
        if task.lyrics_about is not None:
            return (await self._timed(song, "lyrics", self.models.lyrics(task.lyrics_about,
                                                                          seed=words_seed(task)))).lyrics
        return normalize_user_lyrics(task.lyrics or "")

    async def _meta(self, song: Song) -> Written:
        # Title and categories need only the subject (and the caller's tags, when given): they
        # ride in the same LLM batch as the tags and lyrics. An edit of a song is named after it.
        task = song.task
        if task.edit is not None and task.edit.parent_title:
            now = time.time()
            return Written("meta", title=f"{task.edit.parent_title} ({task.edit.task})",
                           categories=list(task.edit.parent_categories), model="", started_at=now, finished_at=now)
        given = song.done["tags"] if task.describe is None else []
        return await self._timed(song, "meta", self.models.meta(task.meta_about, given, seed=words_seed(task)))

    async def _source(self, song: Song) -> bytes:
        """The edit's source audio, as stored (checked at submit; gone since: the edit fails)."""
        t = time.time()
        try:
            data = await self.store.get(song.task.edit.source_key)
        except Exception as exc:  # noqa: BLE001
            raise SongFailed.wrap("source", exc) from exc
        song.stages.record("source", t, time.time())
        return data

    async def _cover(self, song: Song) -> CoverResult:
        edit = song.task.edit
        if edit is not None and edit.parent_cover_key:
            t = time.time()
            try:
                png = await self.store.get(edit.parent_cover_key)
            except Exception as exc:  # noqa: BLE001
                raise SongFailed.wrap("cover", exc) from exc
            song.stages.record("cover", t, time.time())
            return CoverResult(png=png, width=0, height=0, seed=-1, steps=0, prompt="",
                               model=f"kept from song {edit.parent.get('song_id')}", started_at=t,
                               finished_at=time.time(), model_s=0.0)
        prompt = cover_prompt(", ".join(song.done["tags"][:COVER_TAGS]))
        return await self._timed(song, "cover", self.models.cover(CoverRequest(prompt=prompt)))

    def music_request(self, song: Song) -> MusicRequest:
        task = song.task
        opts, lyrics = task.options, song.done["lyrics"]
        # Controls: the caller's fields win; then what the LLM proposed in the tags it wrote.
        controls = {**(proposed_controls(song.done["tags"]) if task.describe is not None else {}),
                    **opts.controls()}
        edit = task.edit
        return MusicRequest(
            tags=", ".join(song.done["tags"]),
            lyrics=lyrics,
            instrumental=opts.instrumental or not lyrics,
            duration_s=opts.duration_s,
            steps=opts.infer_step,
            guidance_scale=opts.guidance_scale,
            seed=opts.seed,
            audio_format=opts.audio_format,
            vocal_language=controls.get("vocal_language") or (guess_language(lyrics) if lyrics else "en"),
            takes=opts.takes,
            bpm=controls.get("bpm"),
            keyscale=controls.get("keyscale"),
            timesignature=controls.get("timesignature"),
            **({} if edit is None else dict(
                task=edit.task, source_audio=song.done["source"], repaint_start_s=edit.repaint_start_s,
                repaint_end_s=edit.repaint_end_s, extend_s=edit.extend_s, cover_strength=edit.cover_strength,
                track_name=edit.track_name,
                complete_tracks=list(edit.complete_tracks) if edit.complete_tracks else None)),
        )

    async def _music(self, song: Song) -> list[MusicResult]:
        """Stream the render: progress after every step, then one result per take; cancelling
        this step cancels the render."""
        sent = time.time()
        results: list[MusicResult] = []
        song.music_request = req = self.music_request(song)
        try:
            async for kind, payload in self.models.music(req, song.id):
                if kind == "progress":
                    step, total = payload
                    await song.observer.progress(step, total)
                    if step == total:
                        await song.enter("encoding")
                else:
                    results.append(payload)
        except Exception as exc:  # noqa: BLE001 - not CancelledError: a cancel stays a cancel
            raise SongFailed.wrap("music", exc) from exc
        if not results:
            raise SongFailed("music", "the music deployment returned no audio")
        if len(results) != req.takes:
            raise SongFailed("music", f"the music deployment returned {len(results)} of {req.takes} takes")
        song.stages.record("music", min(r.started_at or sent for r in results),
                           max(r.finished_at or time.time() for r in results))
        return results

    async def _upload_media(self, song: Song) -> layout.SongKeys:
        takes: list[MusicResult] = song.done["music"]
        keys = layout.SongKeys(self.key_prefix, song.id, takes[0].extension)
        await asyncio.gather(
            *(self._put(song, "upload_audio", keys.take(k), r.audio, r.content_type) for k, r in enumerate(takes)),
            self._put(song, "upload_cover", keys.cover, song.done["cover"].png, layout.COVER_CONTENT_TYPE),
        )
        return keys

    async def _manifest(self, song: Song) -> SongResult:
        keys: layout.SongKeys = song.done["upload"]
        takes: list[MusicResult] = song.done["music"]
        music = takes[0]
        req = song.music_request
        words = Words(song.done["tags"], song.done["lyrics"], song.done["meta"])
        result = SongResult(
            r2_key=keys.audio,
            cover_image_r2_key=keys.cover,
            categories=words.meta.categories,
            song_id=song.id,
            manifest_r2_key=keys.manifest,
            title=words.meta.title,
            tags=words.tags,
            lyrics=words.lyrics,
            instrumental=song.task.options.instrumental,
            seed=music.seed,
            duration_s=round(music.duration_s, 4),
            sample_rate=music.sample_rate,
            audio_format=music.audio_format,
            infer_step=music.steps,
            guidance_scale=music.guidance_scale,
            notes=music.notes,
            mode=song.task.mode.value,
            takes=[{"take": k, "seed": r.seed, "r2_key": keys.take(k), "duration_s": round(r.duration_s, 4)}
                   for k, r in enumerate(takes)],
            parent=dict(song.task.edit.parent) if song.task.edit else None,
            controls={k: v for k, v in (("bpm", req.bpm), ("keyscale", req.keyscale),
                                        ("timesignature", req.timesignature),
                                        ("vocal_language", req.vocal_language)) if v is not None},
        )
        doc = layout.manifest(song_id=song.id, created_at=song.stages.t0, task=song.task, words=words, takes=takes,
                              music_request=req, cover=song.done["cover"],
                              result=result.to_dict(), timings=song.stages.public())
        await self._put(song, "upload_manifest", keys.manifest, json.dumps(doc, indent=2).encode(),
                        layout.MANIFEST_CONTENT_TYPE)
        song.stages.record("total", song.stages.t0, time.time())
        result.timings = song.stages.public()
        return result

    # -- plumbing --

    async def _timed(self, song: Song, name: str, call: Awaitable[Any]) -> Any:
        """Await one model call; record the interval the deployment itself reported."""
        sent = time.time()
        try:
            out = await call
        except Exception as exc:  # noqa: BLE001 - every step failure becomes a named, safe error
            raise SongFailed.wrap(name, exc) from exc
        started = getattr(out, "started_at", 0.0) or sent
        finished = getattr(out, "finished_at", 0.0) or time.time()
        song.stages.record(name, started, finished)
        return out

    async def _put(self, song: Song, name: str, key: str, data: bytes, content_type: str) -> None:
        t = time.time()
        try:
            await self.store.put(key, data, content_type)
        except Exception as exc:  # noqa: BLE001
            raise SongFailed.wrap("upload", exc) from exc
        song.stages.record(name, t, time.time())

    async def remove_partial(self, song_id: str) -> None:
        """Delete whatever a song that did not finish left under its folder (best effort)."""
        try:
            await self.store.delete_prefix(layout.song_folder(self.key_prefix, song_id))
        except Exception as exc:  # noqa: BLE001
            logger.warning("could not remove partial outputs of song %s: %s", song_id, safe_message(exc))
