"""A finished song, as the composer returns it and the job store keeps it (`to_dict`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class SongResult:
    """The first three fields are the seed API's response; links are added per request by the API."""

    r2_key: str
    cover_image_r2_key: str
    categories: list[str]
    song_id: str
    manifest_r2_key: str
    title: str
    tags: list[str]
    lyrics: str
    instrumental: bool
    seed: int
    duration_s: float
    sample_rate: int
    audio_format: str
    infer_step: int
    guidance_scale: float
    notes: list[str] = field(default_factory=list)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    mode: str = "description"
    takes: list[dict[str, Any]] = field(default_factory=list)  # {take, seed, r2_key, duration_s}; [0] is r2_key's
    parent: dict[str, Any] | None = None  # an edit's source: {"song_id", "take"} or {"upload_id"}
    controls: dict[str, Any] = field(default_factory=dict)  # bpm, keyscale, timesignature, vocal_language used

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
