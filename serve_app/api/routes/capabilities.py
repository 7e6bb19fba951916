"""GET /v1/capabilities: what this server's models can make, so a client (the studio, an SDK)
offers only what will be accepted instead of learning it from 422s."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from serve_app.api.deps import Owner, Svc
from serve_app.api.routes.edits import capabilities, why_unavailable
from serve_app.api.schemas import MAX_DURATION_S, MIN_DURATION_S
from serve_app.vocabulary import (
    AUDIO_FORMATS,
    EDIT_TASKS,
    MAX_BPM,
    MAX_TAKES,
    MIN_BPM,
    TIME_SIGNATURES,
    TRACK_NAMES,
    VOCAL_LANGUAGES,
)

router = APIRouter(prefix="/v1", tags=["service"])


class Capabilities(BaseModel):
    tasks: list[str] = Field(description="What POST /v1/songs (text2music) and POST /v1/edits accept here.")
    unavailable: dict[str, str] = Field(description="Each other edit task, and why this server cannot run it.")
    track_names: list[str] = Field(description="Stems extract/lego take (empty when neither runs here).")
    max_variations: int
    min_duration_s: float
    max_duration_s: float
    audio_formats: list[str]
    min_bpm: int
    max_bpm: int
    timesignatures: list[str]
    vocal_languages: list[str]


@router.get("/capabilities", response_model=Capabilities)
async def get_capabilities(svc: Svc, _: Owner) -> Capabilities:
    """The tasks the music deployments run (with the reason for each one they cannot), and the
    ranges and vocabularies of the request fields."""
    caps = await capabilities(svc)
    if caps is None:  # an app without a capabilities probe: what every ACE-Step 1.5 checkpoint runs
        tasks, track_names, max_takes = ["text2music", *EDIT_TASKS], list(TRACK_NAMES), MAX_TAKES
    else:
        tasks, track_names, max_takes = list(caps.tasks), list(caps.track_names), min(caps.max_takes, MAX_TAKES)
    unavailable = {t: why_unavailable(caps, t) for t in EDIT_TASKS if t not in tasks}
    return Capabilities(
        tasks=tasks, unavailable=unavailable, track_names=track_names, max_variations=max_takes,
        min_duration_s=MIN_DURATION_S, max_duration_s=MAX_DURATION_S, audio_formats=list(AUDIO_FORMATS),
        min_bpm=MIN_BPM, max_bpm=MAX_BPM, timesignatures=list(TIME_SIGNATURES), vocal_languages=list(VOCAL_LANGUAGES),
    )
