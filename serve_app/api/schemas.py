"""HTTP request and response bodies. Field names of the seed's API are kept as they were."""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from serve_app.jobs.urlguard import parse_webhook_url
from serve_app.vocabulary import (
    KEYSCALES,
    MAX_BPM,
    MAX_SEED,
    MAX_TAKES,
    MIN_BPM,
    RANDOM_SEED,
    AudioFormat,
    EditTaskName,
    JobStage,
    JobStatus,
    SongMode,
    SongModeName,
    TimeSignature,
    TrackName,
    VocalLanguage,
)

MIN_DURATION_S, MAX_DURATION_S = 10.0, 600.0
MAX_DESCRIPTION_CHARS = 2000
MAX_PROMPT_CHARS = 500
MAX_LYRICS_CHARS = 5000
TEXT_FIELDS = ("full_described_song", "prompt", "lyrics", "described_lyrics", "webhook_url")
SUNG_FIELDS = ("full_described_song", "prompt", "described_lyrics")  # what a song is made from
# Every request body is strict: a number is a JSON number and a boolean a JSON boolean (no "30",
# no `true` for a seed, no 2.0 for a count); a JSON integer is still a valid float.
STRICT = ConfigDict(extra="forbid", strict=True)
_KEYSCALE_BY_LOWER = {k.lower(): k for k in KEYSCALES}

# C0 controls other than tab/newline/carriage return, and DEL: PostgreSQL cannot store NUL in text
# or jsonb (a 500 at submit, or a failed job) and terminal escapes have no place in a song. Unpaired
# UTF-16 surrogates (JSON's "\ud800") are refused by pydantic already; listed so the rule is whole.
_UNSAFE_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def has_substance(text: str) -> bool:
    """A letter or a digit, in any script (zero-width and other format characters, spaces,
    punctuation and symbols alone are nothing to sing about)."""
    return any(unicodedata.category(ch)[0] in "LN" for ch in text)


class SongOptions(BaseModel):
    """Rendering options shared by every generate endpoint."""

    model_config = STRICT

    audio_duration: float = Field(
        default=180.0,
        ge=MIN_DURATION_S,
        le=MAX_DURATION_S,
        description="Song length in seconds (ACE-Step 1.5 supports 10-600).",
    )
    seed: int = Field(default=RANDOM_SEED, ge=RANDOM_SEED, le=MAX_SEED, description="-1 picks a random seed; the used seed is returned.")
    guidance_scale: float | None = Field(
        default=None,
        ge=0.0,
        le=30.0,
        description="Prompt adherence. Omit for the model's recommendation; turbo checkpoints ignore it.",
    )
    infer_step: int | None = Field(
        default=None, ge=1, le=200, description="Diffusion steps. Omit for the model's recommendation (turbo: 8)."
    )
    instrumental: bool = Field(default=False, description="No vocals: lyrics are skipped and no vocal tag is used.")
    audio_format: AudioFormat = Field(default="wav", description="wav (16-bit), flac, mp3 or opus (in ogg).")
    variations: int = Field(
        default=1, ge=1, le=MAX_TAKES,
        description="Takes of this song (1-4): one set of words and one cover, each take its own seed "
                    "(seed, seed+1, ...), rendered in one batch. `r2_key` is the first take.",
    )
    bpm: int | None = Field(default=None, ge=MIN_BPM, le=MAX_BPM,
                            description="Tempo in beats per minute (30-300). Omit: the LLM's proposal or the model's.")
    keyscale: str | None = Field(default=None, description='Key, e.g. "C major", "F# minor", "Bb major".',
                                 examples=["A minor"])
    timesignature: TimeSignature | None = Field(default=None,
                                                description='Beats per bar: "2" (2/4), "3" (3/4), "4" (4/4), "6" (6/8).')
    vocal_language: VocalLanguage | None = Field(default=None,
                                                 description="Language of the lyrics (ISO 639-1). Omit: guessed.")

    @field_validator("keyscale", check_fields=False)
    @classmethod
    def _keyscale(cls, value: str | None) -> str | None:
        if value is None:
            return None
        canonical = _KEYSCALE_BY_LOWER.get(" ".join(value.split()).lower())
        if canonical is None:
            raise ValueError('must be a note (C, C#, Db, D, ... B) and "major" or "minor", e.g. "F# minor"')
        return canonical

    @field_validator(*TEXT_FIELDS, check_fields=False)
    @classmethod
    def _safe_text(cls, value: str | None) -> str | None:
        if value is not None and _UNSAFE_CHARS.search(value):
            raise ValueError("must not contain control characters (other than tab and newline) or unpaired "
                             "surrogates")
        return value

    @field_validator(*SUNG_FIELDS, check_fields=False)
    @classmethod
    def _singable(cls, value: str | None) -> str | None:
        if value is not None and not has_substance(value):
            raise ValueError("must contain a letter or digit (only spaces, punctuation, symbols or zero-width "
                             "characters is nothing to sing about)")
        return value

    @field_validator("webhook_url", check_fields=False)
    @classmethod
    def _sendable_url(cls, value: str | None) -> str | None:
        """Read as the webhook sender's HTTP client reads it: what it cannot send as written is
        refused here, not retried forever later (the address checks come at submit)."""
        if value is not None:
            parse_webhook_url(value)
        return value


class GenerateFromDescription(SongOptions):
    full_described_song: str = Field(
        min_length=1,
        max_length=MAX_DESCRIPTION_CHARS,
        description="What the song should be; the LLM writes its tags, lyrics, title and categories.",
    )


class GenerateWithLyrics(SongOptions):
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="Comma-separated music tags.")
    lyrics: str = Field(
        default="",
        max_length=MAX_LYRICS_CHARS,
        description="Your lyrics; [verse]/[chorus]/[bridge] tags are added where missing.",
    )


class GenerateWithDescribedLyrics(SongOptions):
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="Comma-separated music tags.")
    described_lyrics: str = Field(
        min_length=1, max_length=MAX_DESCRIPTION_CHARS, description="What the lyrics should be about."
    )


class SongSource(BaseModel):
    """What an edit starts from: one of your songs (a take of it) or one of your uploads."""

    model_config = STRICT

    song_id: str | None = Field(default=None, pattern="^[0-9a-f]{32}$", description="A finished song of yours.")
    take: int = Field(default=0, ge=0, lt=MAX_TAKES, description="Which take of that song (0 = the first).")
    upload_id: str | None = Field(default=None, pattern="^[0-9a-f]{32}$", description="An upload of yours.")

    @model_validator(mode="after")
    def _one(self) -> SongSource:
        if (self.song_id is None) == (self.upload_id is None):
            raise ValueError("give exactly one of song_id or upload_id")
        if self.upload_id is not None and self.take:
            raise ValueError("take applies to a song_id source only")
        return self


class EditCreate(BaseModel):
    """An edit of a source song or upload: a new song; the source is never modified.

    Tags and lyrics default to the source song's (an upload has none: give `prompt`)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"task": "repaint", "source": {"song_id": "0123456789abcdef0123456789abcdef", "take": 0},
         "repaint_start_s": 20, "repaint_end_s": 35},
        {"task": "extend", "source": {"song_id": "0123456789abcdef0123456789abcdef"}, "extend_s": 30},
        {"task": "cover", "source": {"upload_id": "fedcba9876543210fedcba9876543210"},
         "prompt": "jazz, brushed drums", "cover_strength": 0.6},
    ]})

    task: EditTaskName = Field(description="cover, repaint, extend; extract, lego, complete need a base checkpoint.")
    source: SongSource
    prompt: str | None = Field(default=None, min_length=1, max_length=MAX_PROMPT_CHARS,
                               description="Tags for the new audio. Default: the source song's.")
    lyrics: str | None = Field(default=None, max_length=MAX_LYRICS_CHARS,
                               description="Lyrics sung in the new audio. Default: the source song's.")
    repaint_start_s: float | None = Field(default=None, ge=0.0, le=MAX_DURATION_S,
                                          description="repaint: start of the range written anew (seconds).")
    repaint_end_s: float | None = Field(default=None, gt=0.0, le=MAX_DURATION_S,
                                        description="repaint: end of that range; the rest of the source is kept.")
    extend_s: float | None = Field(default=None, ge=1.0, le=MAX_DURATION_S,
                                   description="extend: seconds added after the source (total at most 600 s).")
    cover_strength: float = Field(default=1.0, ge=0.0, le=1.0,
                                  description="cover: 1 follows the source closely; lower restyles more.")
    track_name: TrackName | None = Field(default=None, description="extract / lego: the stem to extract or add.")
    complete_tracks: list[TrackName] | None = Field(default=None, min_length=1, max_length=12,
                                                    description="complete: the tracks to add.")
    seed: int = Field(default=RANDOM_SEED, ge=RANDOM_SEED, le=MAX_SEED)
    infer_step: int | None = Field(default=None, ge=1, le=200)
    guidance_scale: float | None = Field(default=None, ge=0.0, le=30.0)
    audio_format: AudioFormat = "wav"
    variations: int = Field(default=1, ge=1, le=MAX_TAKES)
    bpm: int | None = Field(default=None, ge=MIN_BPM, le=MAX_BPM)
    keyscale: str | None = None
    timesignature: TimeSignature | None = None
    vocal_language: VocalLanguage | None = None
    webhook_url: str | None = Field(default=None, min_length=1, max_length=2048)

    _keyscale = field_validator("keyscale")(SongOptions._keyscale.__func__)
    _safe_text = field_validator("prompt", "lyrics", "webhook_url")(SongOptions._safe_text.__func__)
    _sendable_url = field_validator("webhook_url")(SongOptions._sendable_url.__func__)
    _singable = field_validator("prompt")(SongOptions._singable.__func__)

    @model_validator(mode="after")
    def _task_fields(self) -> EditCreate:
        needs = {"repaint": ("repaint_start_s", "repaint_end_s"), "extend": ("extend_s",),
                 "extract": ("track_name",), "lego": ("track_name",), "complete": ("complete_tracks",)}
        only = {"repaint_start_s": "repaint", "repaint_end_s": "repaint", "extend_s": "extend",
                "track_name": "extract or lego", "complete_tracks": "complete"}
        for name in needs.get(self.task, ()):
            if getattr(self, name) is None:
                raise ValueError(f"{name} is required for task {self.task!r}")
        for name, tasks in only.items():
            if getattr(self, name) is not None and self.task not in tasks.replace(" or ", " ").split():
                raise ValueError(f"{name} applies to task {tasks} only, not {self.task!r}")
        if self.task == "repaint" and self.repaint_end_s <= self.repaint_start_s:
            raise ValueError("repaint_end_s must be greater than repaint_start_s")
        if self.webhook_url and not self.webhook_url.startswith(("http://", "https://")):
            raise ValueError("webhook_url must be an http(s) URL")
        return self


class UploadPublic(BaseModel):
    """An uploaded audio file, checked and stored at the model's sample rate."""

    upload_id: str
    duration_s: float = Field(description="Length of the audio.")
    sample_rate: int = Field(description="Rate it is stored at (the model's).")
    channels: int
    original: dict = Field(description="What was sent: format, sample_rate, channels, bytes, filename.")
    created_at: float


class PresignedUpload(BaseModel):
    """Where to PUT a large file (S3/R2 storage), then POST /v1/uploads/{upload_id}/complete."""

    upload_id: str
    put_url: str
    method: Literal["PUT"]
    content_type: str = Field(description="Send the PUT with this Content-Type (it is signed).")
    expires_in_s: int
    max_bytes: int


class TakePublic(BaseModel):
    take: int
    seed: int
    r2_key: str
    duration_s: float
    audio_url: str


class StageTiming(BaseModel):
    start_s: float = Field(description="Seconds after the song started.")
    end_s: float = Field(description="Seconds after the song started.")
    seconds: float = Field(description="Duration of the stage.")


class SongPublic(BaseModel):
    """A finished song. The first three fields are the seed API's response."""

    r2_key: str = Field(description="Storage key of the audio file.")
    cover_image_r2_key: str = Field(description="Storage key of the 512x512 PNG cover.")
    categories: list[str] = Field(description="3-5 music categories.")
    song_id: str = Field(description="Id grouping every object of this song under songs/<id>/.")
    manifest_r2_key: str = Field(description="Storage key of the JSON manifest (inputs, LLM output, seed, models).")
    title: str
    tags: list[str] = Field(description="Music tags the song was rendered from.")
    lyrics: str = Field(description="Sectioned lyrics sung (empty for instrumentals).")
    instrumental: bool
    seed: int = Field(description="Seed actually used (reuse it to reproduce the song).")
    duration_s: float = Field(description="Length of the stored audio in seconds.")
    sample_rate: int
    audio_format: AudioFormat
    infer_step: int = Field(description="Diffusion steps used.")
    guidance_scale: float = Field(description="Guidance used (1.0 = none, for turbo checkpoints).")
    audio_url: str = Field(description="Short-lived download link for the audio.")
    cover_image_url: str = Field(description="Short-lived download link for the cover.")
    manifest_url: str | None = Field(default=None, description=(
        "Short-lived download link for the JSON manifest (manifest_r2_key): every input, the LLM's "
        "words, seeds, takes, controls, models and timings."))
    links_expire_in_s: int
    notes: list[str] = Field(default_factory=list, description="Adjustments made to the request, if any.")
    timings: dict[str, StageTiming] = Field(description="Per-stage wall times of this song.")
    mode: SongModeName = Field(default="description", description="What the song was made from (its kind).")
    takes: list[TakePublic] = Field(default_factory=list, description="Every take, the first being r2_key's.")
    parent: dict | None = Field(default=None, description="An edit's source: song_id (and take) or upload_id.")
    controls: dict = Field(default_factory=dict, description="bpm, keyscale, timesignature, vocal_language used.")


class AuthStatus(BaseModel):
    authenticated: bool
    message: str


class DeploymentHealth(BaseModel):
    ready: bool
    detail: str = ""


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    deployments: dict[str, DeploymentHealth] | None = Field(
        default=None, description="Each deployment's readiness: only with a valid bearer token.")


# ---------------------------------------------------------------- asynchronous song jobs

MODE_BODIES: dict[SongMode, type[SongOptions]] = {
    SongMode.DESCRIPTION: GenerateFromDescription,
    SongMode.LYRICS: GenerateWithLyrics,
    SongMode.DESCRIBED_LYRICS: GenerateWithDescribedLyrics,
}
BODY_MODES: dict[type[SongOptions], SongMode] = {body: mode for mode, body in MODE_BODIES.items()}


class SongCreate(SongOptions):
    """One body for every mode: a description; tags + lyrics; tags + a lyrics description; or
    tags alone with `instrumental: true`."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"full_described_song": "an upbeat synthwave song about driving at night", "audio_duration": 60},
        {"prompt": "lofi, piano, rain", "lyrics": "[verse]\nrain on the window", "audio_duration": 30,
         "variations": 2, "bpm": 80, "keyscale": "A minor"},
        {"prompt": "folk, acoustic guitar", "described_lyrics": "a dog who surfs", "audio_format": "mp3"},
    ]})

    full_described_song: str | None = Field(
        default=None, min_length=1, max_length=MAX_DESCRIPTION_CHARS,
        description="Description mode: the LLM writes tags, lyrics, title and categories.",
    )
    prompt: str | None = Field(
        default=None, min_length=1, max_length=MAX_PROMPT_CHARS, description="Comma-separated music tags."
    )
    lyrics: str | None = Field(
        default=None, max_length=MAX_LYRICS_CHARS, description="Lyrics mode: your lyrics, sung as written."
    )
    described_lyrics: str | None = Field(
        default=None, min_length=1, max_length=MAX_DESCRIPTION_CHARS,
        description="Described-lyrics mode: what the LLM should write the lyrics about.",
    )
    webhook_url: str | None = Field(
        default=None, min_length=1, max_length=2048,
        description="POSTed the job when it ends, signed per Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature; docs/webhooks.md).",
    )

    @model_validator(mode="after")
    def _one_mode(self) -> SongCreate:
        # Presence, not truthiness: `"lyrics": ""` is still a lyrics field (an empty one), and a
        # field the mode's own body does not have must be refused here, not fail later as a 500.
        has = {k for k in ("full_described_song", "prompt", "lyrics", "described_lyrics")
               if getattr(self, k) is not None}
        if self.full_described_song is not None and has != {"full_described_song"}:
            raise ValueError("full_described_song cannot be combined with prompt, lyrics or described_lyrics")
        if self.full_described_song is None and self.prompt is None:
            raise ValueError("give either full_described_song, or prompt (with lyrics or described_lyrics)")
        if self.lyrics is not None and self.described_lyrics is not None:
            raise ValueError("give lyrics or described_lyrics, not both")
        if self.webhook_url and not self.webhook_url.startswith(("http://", "https://")):
            raise ValueError("webhook_url must be an http(s) URL")
        return self

    @property
    def mode(self) -> SongMode:
        if self.full_described_song is not None:
            return SongMode.DESCRIPTION
        return SongMode.DESCRIBED_LYRICS if self.described_lyrics is not None else SongMode.LYRICS

    def song_request(self) -> dict:
        """The mode's own body (the seed endpoint's fields), as stored in the job."""
        body = self.model_dump(exclude={"webhook_url"}, exclude_none=True)
        return MODE_BODIES[self.mode].model_validate(body).model_dump()


class JobProgress(BaseModel):
    step: int | None
    total: int | None


class SongJobPublic(BaseModel):
    id: str
    status: JobStatus
    mode: SongModeName
    stage: JobStage | None = Field(description="What the job is doing now (while running).")
    progress: JobProgress | None = Field(description="Diffusion step k of n while composing.")
    queue_position: int | None = Field(default=None, description="1 = next to start (while queued).")
    attempts: int
    cancel_requested: bool
    error: str | None = Field(description="Why the job failed, in words.")
    result: SongPublic | None = Field(description="The song, with fresh links, once succeeded.")
    request: dict
    parent_id: str | None = Field(default=None, description="An edit's source song.")
    webhook_url: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    updated_at: str
    last_event_seq: int


class SongJobList(BaseModel):
    items: list[SongJobPublic]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page.")
