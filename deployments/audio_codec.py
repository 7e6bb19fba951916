"""Encode rendered audio to compact bytes: replicas return files, never 69 MB float32 arrays."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import soundfile as sf

# The formats a song can be encoded in, defined once: the music request/result types and CODECS use it.
AudioFormat = Literal["wav", "flac", "mp3", "opus"]


@dataclass(frozen=True)
class Codec:
    extension: str
    content_type: str
    sf_format: str
    sf_subtype: str


CODECS: dict[AudioFormat, Codec] = {
    "wav": Codec("wav", "audio/wav", "WAV", "PCM_16"),
    "flac": Codec("flac", "audio/flac", "FLAC", "PCM_16"),
    "mp3": Codec("mp3", "audio/mpeg", "MP3", "MPEG_LAYER_III"),
    # Opus only runs at 8/12/16/24/48 kHz; ACE-Step renders 48 kHz.
    "opus": Codec("ogg", "audio/ogg", "OGG", "OPUS"),
}
if set(CODECS) != set(get_args(AudioFormat)):  # a format added to one but not the other
    raise ImportError(f"CODECS {sorted(CODECS)} != AudioFormat {sorted(get_args(AudioFormat))}")


def encode(audio: np.ndarray, sample_rate: int, fmt: AudioFormat) -> bytes:
    """`audio` is (channels, samples) float in [-1, 1]; returns the encoded file's bytes."""
    codec = CODECS[fmt]
    frames = np.ascontiguousarray(np.clip(audio, -1.0, 1.0).T, dtype=np.float32)
    buf = io.BytesIO()
    sf.write(buf, frames, sample_rate, format=codec.sf_format, subtype=codec.sf_subtype)
    return buf.getvalue()


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Inverse of `encode` for tests and tools: returns ((samples, channels) float32, sample_rate)."""
    frames, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return frames, sr
