"""The service's words, each defined once: job statuses, stages, song modes, audio formats, seeds.

The HTTP schemas, the job store, its tables and migrations, the runner and the composer all import
these; nothing else spells them out.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args

from deployments.audio_codec import AudioFormat
from deployments.protocol import MAX_SEED

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JOB_STATUSES: tuple[str, ...] = get_args(JobStatus)
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})

# What a running job is doing, in the order a song goes through them.
JobStage = Literal["writing", "painting", "composing", "encoding", "uploading"]
JOB_STAGES: tuple[str, ...] = get_args(JobStage)


class SongMode(StrEnum):
    """What a song is made from; the seed's three endpoints, one each."""

    DESCRIPTION = "description"  # the LLM writes tags, lyrics, title and categories
    LYRICS = "lyrics"  # the caller's tags and lyrics
    DESCRIBED_LYRICS = "described_lyrics"  # the caller's tags; the LLM writes lyrics about a subject


SongModeName = Literal["description", "lyrics", "described_lyrics"]
SONG_MODES: tuple[str, ...] = tuple(m.value for m in SongMode)
assert SONG_MODES == get_args(SongModeName)

AUDIO_FORMATS: tuple[str, ...] = get_args(AudioFormat)

RANDOM_SEED = -1  # what a request sends to let the service pick (the used seed is returned)

WebhookStatus = Literal["pending", "delivered", "failed"]
WEBHOOK_STATUSES: tuple[str, ...] = get_args(WebhookStatus)

__all__ = [
    "AUDIO_FORMATS", "JOB_STAGES", "JOB_STATUSES", "MAX_SEED", "RANDOM_SEED", "SONG_MODES", "TERMINAL_STATUSES",
    "WEBHOOK_STATUSES", "AudioFormat", "JobStage", "JobStatus", "SongMode", "SongModeName", "WebhookStatus",
]
