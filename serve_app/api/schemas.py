"""HTTP request and response bodies. Field names of the seed's API are kept as they were."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from serve_app.vocabulary import MAX_SEED, RANDOM_SEED, AudioFormat, JobStage, JobStatus, SongMode, SongModeName

MIN_DURATION_S, MAX_DURATION_S = 10.0, 600.0
MAX_DESCRIPTION_CHARS = 2000
MAX_PROMPT_CHARS = 500
MAX_LYRICS_CHARS = 5000
TEXT_FIELDS = ("full_described_song", "prompt", "lyrics", "described_lyrics", "webhook_url")

# C0 controls other than tab/newline/carriage return, and DEL: PostgreSQL cannot store NUL in text
# or jsonb (a 500 at submit, or a failed job) and terminal escapes have no place in a song. Unpaired
# UTF-16 surrogates (JSON's "\ud800") are refused by pydantic already; listed so the rule is whole.
_UNSAFE_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


class SongOptions(BaseModel):
    """Rendering options shared by every generate endpoint."""

    model_config = ConfigDict(extra="forbid")

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

    @field_validator(*TEXT_FIELDS, check_fields=False)
    @classmethod
    def _safe_text(cls, value: str | None) -> str | None:
        if value is not None and _UNSAFE_CHARS.search(value):
            raise ValueError("must not contain control characters (other than tab and newline) or unpaired "
                             "surrogates")
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
    links_expire_in_s: int
    notes: list[str] = Field(default_factory=list, description="Adjustments made to the request, if any.")
    timings: dict[str, StageTiming] = Field(description="Per-stage wall times of this song.")


class AuthStatus(BaseModel):
    authenticated: bool
    message: str


class DeploymentHealth(BaseModel):
    ready: bool
    detail: str = ""


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    deployments: dict[str, DeploymentHealth]


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
        description="POSTed the job when it ends (signed: X-Songsmith-Signature: t=<unix>,v1=<hmac-sha256>).",
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
    webhook_url: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    updated_at: str
    last_event_seq: int


class SongJobList(BaseModel):
    items: list[SongJobPublic]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page.")
