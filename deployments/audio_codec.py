"""Encode rendered audio to compact bytes (replicas return files, never 69 MB float32 arrays), and
decode and check the source files of edits. No torch here: the ingress validates uploads with it."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args

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


# -- source audio (edits: cover, repaint, extend, ...) --

# The longest source an edit may take, and the longest song any task may render (extend's total).
MAX_SOURCE_S = 600.0
# The containers a source may come in (soundfile's format names; WAV variants are all "wav").
SOURCE_FORMATS: dict[str, str] = {"WAV": "wav", "WAVEX": "wav", "RF64": "wav", "W64": "wav", "FLAC": "flac",
                                  "MP3": "mp3", "OGG": "ogg"}


class SourceInfo(NamedTuple):
    """What `probe` reads from a file's header: a plain tuple, so `duration, rate, channels, fmt = probe(b)`."""

    duration_s: float
    sample_rate: int
    channels: int
    format: str  # "wav", "flac", "mp3" or "ogg"


def _sf_message(exc: Exception) -> str:
    """libsndfile's own words, without soundfile's "Error opening <_io.BytesIO object at 0x...>" prefix."""
    text = getattr(exc, "error_string", None) or str(exc)
    return text.split(": ")[-1].strip().rstrip(".") if "Error opening" in text else text.strip().rstrip(".")


def probe(data: bytes) -> SourceInfo:
    """Header facts of an encoded audio file (wav/flac/mp3/ogg), without decoding its samples.

    Raises ValueError, saying what is wrong, for empty bytes, a file soundfile cannot read, a
    container outside SOURCE_FORMATS, or one that holds no samples. (An mp3's length is libsndfile's
    count from its frame headers; `load_source` checks the decoded length again.)
    """
    if not data:
        raise ValueError("source audio is empty (0 bytes)")
    try:
        info = sf.info(io.BytesIO(data))
    except (sf.SoundFileError, RuntimeError) as exc:
        raise ValueError(f"source audio is not a readable wav, flac, mp3 or ogg file ({_sf_message(exc)})") from None
    fmt = SOURCE_FORMATS.get(info.format)
    if fmt is None:
        raise ValueError(f"source audio is {info.format}, not one of wav, flac, mp3, ogg")
    if info.samplerate <= 0 or info.channels <= 0:
        raise ValueError(f"source audio has {info.channels} channel(s) at {info.samplerate} Hz")
    if info.frames <= 0:
        raise ValueError("source audio has no samples (0 s long)")
    return SourceInfo(info.frames / info.samplerate, int(info.samplerate), int(info.channels), fmt)


def load_source(data: bytes, sample_rate: int, *, max_seconds: float) -> np.ndarray:
    """Decode a source file to what the music model takes: (2, samples) float32 at `sample_rate`.

    Mono is copied to both channels; more than two channels keep the first two (front left and
    right in WAV/FLAC's channel order). Other rates are resampled with soxr (its default high
    quality); a file already at `sample_rate` is returned exactly as decoded, with no resampling.
    Sample values are kept as decoded (no normalization, no clipping), so the same bytes always
    give the same array. Raises ValueError, saying what is wrong (never a path), for empty, corrupt
    or unsupported files, files with no samples, files over `max_seconds`, and non-finite samples.
    """
    info = probe(data)
    if info.duration_s > max_seconds:
        raise ValueError(f"source audio is {info.duration_s:.1f} s long; the most is {max_seconds:g} s")
    try:
        frames, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as exc:
        raise ValueError(f"source audio could not be decoded ({_sf_message(exc)})") from None
    if frames.shape[0] == 0:
        raise ValueError("source audio has no samples (0 s long)")
    if frames.shape[0] / rate > max_seconds:  # an mp3 whose headers under-counted
        raise ValueError(f"source audio is {frames.shape[0] / rate:.1f} s long; the most is {max_seconds:g} s")
    if not np.isfinite(frames).all():
        raise ValueError("source audio has NaN or infinite samples")
    if frames.shape[1] == 1:
        frames = np.repeat(frames, 2, axis=1)
    elif frames.shape[1] > 2:
        frames = frames[:, :2]
    if rate != sample_rate:
        import soxr

        frames = soxr.resample(frames, rate, sample_rate)
        if frames.shape[0] == 0:
            raise ValueError(f"source audio is too short to resample to {sample_rate} Hz")
    return np.ascontiguousarray(frames.T, dtype=np.float32)
