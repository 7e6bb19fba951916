"""What to make: a typed song task, built once from a stored request, read by the composer.

The three modes differ only in which words the caller gave and which the LLM writes; the task
says that in fields, so the composer plans its steps from data instead of from the request type.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from serve_app.vocabulary import RANDOM_SEED, AudioFormat, SongMode


@dataclass(frozen=True)
class RenderOptions:
    """How to render, whatever the words: the seed API's shared fields."""

    duration_s: float = 180.0
    seed: int = RANDOM_SEED
    guidance_scale: float | None = None
    infer_step: int | None = None
    instrumental: bool = False
    audio_format: AudioFormat = "wav"
    takes: int = 1
    bpm: int | None = None
    keyscale: str | None = None
    timesignature: str | None = None
    vocal_language: str | None = None  # None: guessed from the lyrics

    def controls(self) -> dict[str, Any]:
        """The musical controls the caller set (the manifest records them)."""
        return {k: v for k, v in (("bpm", self.bpm), ("keyscale", self.keyscale),
                                  ("timesignature", self.timesignature),
                                  ("vocal_language", self.vocal_language)) if v is not None}


@dataclass(frozen=True)
class EditSpec:
    """An edit's source and the task's parameters, resolved at submit time (the source's storage
    key and length were checked then; the worker only reads them)."""

    task: str
    source_key: str  # the source audio's object key
    source_duration_s: float
    parent: dict[str, Any]  # {"song_id", "take"} or {"upload_id"}: what the manifest names
    parent_cover_key: str | None = None  # a song source's cover: the edit keeps it
    parent_title: str | None = None
    parent_categories: tuple[str, ...] = ()
    repaint_start_s: float | None = None
    repaint_end_s: float | None = None
    extend_s: float = 0.0
    cover_strength: float = 1.0
    track_name: str | None = None
    complete_tracks: tuple[str, ...] | None = None

    @property
    def duration_s(self) -> float:
        """The edit's output length: the source's, plus what an extend adds."""
        return self.source_duration_s + (self.extend_s if self.task == "extend" else 0.0)


@dataclass(frozen=True)
class SongTask:
    """One song to make.

    `describe`: the LLM writes the tags from this. `tags`: the caller's tags (then no LLM tags).
    `lyrics`: the caller's lyrics, sung as written. `lyrics_about`: the LLM writes lyrics about
    this. `meta_about`: what the title and categories are written from. `request` is the body as
    the caller sent it, kept for the manifest.
    """

    mode: SongMode
    options: RenderOptions
    meta_about: str
    describe: str | None = None
    tags: str | None = None
    lyrics: str | None = None
    lyrics_about: str | None = None
    request: dict[str, Any] | None = None
    edit: EditSpec | None = None

    def with_seed(self, seed: int) -> SongTask:
        return replace(self, options=replace(self.options, seed=seed),
                       request={**(self.request or {}), "seed": seed})

    @classmethod
    def from_request(cls, mode: str, request: dict[str, Any]) -> SongTask:
        """A task from a job's stored request (the mode's body, validated when it was submitted)."""
        mode = SongMode(mode)
        options = RenderOptions(
            duration_s=float(request.get("audio_duration", RenderOptions.duration_s)),
            seed=int(request.get("seed", RANDOM_SEED)),
            guidance_scale=request.get("guidance_scale"),
            infer_step=request.get("infer_step"),
            instrumental=bool(request.get("instrumental", False)),
            audio_format=request.get("audio_format", "wav"),
            takes=int(request.get("variations", 1)),
            bpm=request.get("bpm"),
            keyscale=request.get("keyscale"),
            timesignature=request.get("timesignature"),
            vocal_language=request.get("vocal_language"),
        )
        if mode.is_edit:
            src = request["source"]
            edit = EditSpec(
                task=mode.value, source_key=src["key"], source_duration_s=float(src["duration_s"]),
                parent={k: src[k] for k in ("song_id", "take", "upload_id") if k in src},
                parent_cover_key=src.get("cover_key"), parent_title=src.get("title"),
                parent_categories=tuple(src.get("categories") or ()),
                repaint_start_s=request.get("repaint_start_s"), repaint_end_s=request.get("repaint_end_s"),
                extend_s=float(request.get("extend_s") or 0.0), cover_strength=float(request.get("cover_strength", 1.0)),
                track_name=request.get("track_name"),
                complete_tracks=tuple(request["complete_tracks"]) if request.get("complete_tracks") else None,
            )
            options = replace(options, duration_s=edit.duration_s, instrumental=bool(request.get("instrumental")))
            tags = request.get("prompt") or ""
            return cls(mode, options, meta_about=tags, tags=tags, lyrics=request.get("lyrics") or "",
                       request=request, edit=edit)
        if mode is SongMode.DESCRIPTION:
            text = request["full_described_song"]
            return cls(mode, options, meta_about=text, describe=text, lyrics_about=text, request=request)
        if mode is SongMode.LYRICS:
            return cls(mode, options, meta_about=request["prompt"], tags=request["prompt"],
                       lyrics=request.get("lyrics", ""), request=request)
        subject = request["described_lyrics"]
        return cls(mode, options, meta_about=subject, tags=request["prompt"], lyrics_about=subject, request=request)
