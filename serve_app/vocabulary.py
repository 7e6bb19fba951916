"""The service's words, each defined once: job statuses, stages, song modes, audio formats, seeds.

The HTTP schemas, the job store, its tables and migrations, the runner and the composer all import
these; nothing else spells them out.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args

from deployments.audio_codec import AudioFormat
from deployments.protocol import EDIT_TASKS, MAX_SEED, MAX_TAKES, TRACK_NAMES

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JOB_STATUSES: tuple[str, ...] = get_args(JobStatus)
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})

# What a running job is doing, in the order a song goes through them.
JobStage = Literal["writing", "painting", "composing", "encoding", "uploading"]
JOB_STAGES: tuple[str, ...] = get_args(JobStage)


class SongMode(StrEnum):
    """What a song is made from: the seed's three endpoints, one each, then the edits of a source
    (a previous song or an upload), one per ACE-Step task. A job's `mode` is its kind."""

    DESCRIPTION = "description"  # the LLM writes tags, lyrics, title and categories
    LYRICS = "lyrics"  # the caller's tags and lyrics
    DESCRIBED_LYRICS = "described_lyrics"  # the caller's tags; the LLM writes lyrics about a subject
    COVER = "cover"  # the source restyled with new tags/lyrics
    REPAINT = "repaint"  # a time range written anew, the rest kept
    EXTEND = "extend"  # seconds added after the source
    EXTRACT = "extract"  # one stem of the source (base checkpoints)
    LEGO = "lego"  # a track added to the source (base checkpoints)
    COMPLETE = "complete"  # the source completed with more tracks (base checkpoints)

    @property
    def is_edit(self) -> bool:
        return self.value in EDIT_TASKS


SongModeName = Literal["description", "lyrics", "described_lyrics", "cover", "repaint", "extend", "extract", "lego",
                       "complete"]
SONG_MODES: tuple[str, ...] = tuple(m.value for m in SongMode)
assert SONG_MODES == get_args(SongModeName)
EditTaskName = Literal["cover", "repaint", "extend", "extract", "lego", "complete"]
assert get_args(EditTaskName) == EDIT_TASKS
TrackName = Literal["woodwinds", "brass", "fx", "synth", "strings", "percussion", "keyboard", "guitar", "bass", "drums",
                    "backing_vocals", "vocals"]
assert get_args(TrackName) == TRACK_NAMES

# Musical controls ACE-Step 1.5 reads (its own handler's ranges and spellings).
MIN_BPM, MAX_BPM = 30, 300
KEY_NOTES: tuple[str, ...] = ("C", "C#", "Db", "D", "D#", "Eb", "E", "F", "F#", "Gb", "G", "G#", "Ab", "A", "A#", "Bb",
                              "B")
KEY_MODES: tuple[str, ...] = ("major", "minor")
KEYSCALES: tuple[str, ...] = tuple(f"{n} {m}" for n in KEY_NOTES for m in KEY_MODES)
TimeSignature = Literal["2", "3", "4", "6"]  # beats per bar: 2/4, 3/4, 4/4, 6/8
TIME_SIGNATURES: tuple[str, ...] = get_args(TimeSignature)
# Lyrics languages ACE-Step 1.5 was trained with (its VALID_LANGUAGES); "unknown" lets it guess.
VocalLanguage = Literal["ar", "az", "bg", "bn", "ca", "cs", "da", "de", "el", "en", "es", "fa", "fi", "fr", "he", "hi",
                        "hr", "ht", "hu", "id", "is", "it", "ja", "ko", "la", "lt", "ms", "ne", "nl", "no", "pa", "pl",
                        "pt", "ro", "ru", "sa", "sk", "sr", "sv", "sw", "ta", "te", "th", "tl", "tr", "uk", "ur", "vi",
                        "yue", "zh", "unknown"]
VOCAL_LANGUAGES: tuple[str, ...] = get_args(VocalLanguage)

AUDIO_FORMATS: tuple[str, ...] = get_args(AudioFormat)

RANDOM_SEED = -1  # what a request sends to let the service pick (the used seed is returned)

WebhookStatus = Literal["pending", "delivered", "failed"]
WEBHOOK_STATUSES: tuple[str, ...] = get_args(WebhookStatus)

__all__ = [
    "AUDIO_FORMATS", "EDIT_TASKS", "KEYSCALES", "MAX_BPM", "MAX_TAKES", "MIN_BPM", "TIME_SIGNATURES", "TRACK_NAMES",
    "VOCAL_LANGUAGES", "EditTaskName", "TimeSignature", "TrackName", "VocalLanguage", "JOB_STAGES", "JOB_STATUSES", "MAX_SEED", "RANDOM_SEED", "SONG_MODES", "TERMINAL_STATUSES",
    "WEBHOOK_STATUSES", "AudioFormat", "JobStage", "JobStatus", "SongMode", "SongModeName", "WebhookStatus",
]
