"""Where a song's objects live and what its manifest says: one place for both.

    <prefix>/<song id>/audio.<ext>   the rendered song (its first take)
    <prefix>/<song id>/audio-<k>.<ext> take k (k >= 1) of a song with variations
    <prefix>/<song id>/cover.png     the cover
    <prefix>/<song id>/manifest.json every input, LLM output, seed and model; written last, so a
                                     song with a manifest is complete
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

COVER_CONTENT_TYPE = "image/png"
MANIFEST_CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class SongKeys:
    prefix: str
    song_id: str
    extension: str

    @property
    def folder(self) -> str:
        """Every object of the song is under this prefix (what a cleanup deletes)."""
        return song_folder(self.prefix, self.song_id)

    @property
    def audio(self) -> str:
        return f"{self.folder}audio.{self.extension}"

    def take(self, k: int) -> str:
        return self.audio if k == 0 else f"{self.folder}audio-{k}.{self.extension}"

    @property
    def cover(self) -> str:
        return f"{self.folder}cover.png"

    @property
    def manifest(self) -> str:
        return f"{self.folder}manifest.json"


def song_folder(prefix: str, song_id: str) -> str:
    return f"{prefix.strip('/')}/{song_id}/"


def manifest(*, song_id: str, created_at: float, task, words, takes, music_request, cover, result: dict,
             timings: dict[str, Any]) -> dict[str, Any]:
    """The manifest document: enough to trace and reproduce the song (and, for an edit, to follow
    the chain of edits back through `parent`)."""
    music = takes[0]
    req = music_request
    edit = None
    if task.edit is not None:
        e = task.edit
        edit = {"task": e.task, "parent": e.parent, "source_duration_s": e.source_duration_s,
                "repaint_start_s": e.repaint_start_s, "repaint_end_s": e.repaint_end_s, "extend_s": e.extend_s,
                "cover_strength": e.cover_strength, "track_name": e.track_name,
                "complete_tracks": list(e.complete_tracks) if e.complete_tracks else None}
    return {
        "song_id": song_id,
        "created_at": created_at,
        "mode": task.mode.value,
        "parent": dict(task.edit.parent) if task.edit else None,
        "edit": edit,
        "request": {"mode": task.mode.value, **(task.request or {})},
        "llm": {"model": words.meta.model, "tags": words.tags, "lyrics": words.lyrics, "title": words.meta.title,
                "categories": words.meta.categories, "raw": {"meta": words.meta.raw}},
        "music": {"model": music.model, "seed": music.seed, "steps": music.steps,
                  "guidance_scale": music.guidance_scale, "sample_rate": music.sample_rate,
                  "channels": music.channels, "num_samples": music.num_samples,
                  "vocal_language": req.vocal_language, "bpm": req.bpm, "keyscale": req.keyscale,
                  "timesignature": req.timesignature, "task": req.task, "notes": music.notes,
                  "takes": [{"take": k, "seed": r.seed, "num_samples": r.num_samples, "duration_s": r.duration_s}
                            for k, r in enumerate(takes)]},
        "cover": {"model": cover.model, "seed": cover.seed, "steps": cover.steps, "prompt": cover.prompt,
                  "width": cover.width, "height": cover.height},
        "result": result,
        "timings": timings,
    }
