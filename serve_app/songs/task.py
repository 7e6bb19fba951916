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
        )
        if mode is SongMode.DESCRIPTION:
            text = request["full_described_song"]
            return cls(mode, options, meta_about=text, describe=text, lyrics_about=text, request=request)
        if mode is SongMode.LYRICS:
            return cls(mode, options, meta_about=request["prompt"], tags=request["prompt"],
                       lyrics=request.get("lyrics", ""), request=request)
        subject = request["described_lyrics"]
        return cls(mode, options, meta_about=subject, tags=request["prompt"], lyrics_about=subject, request=request)
