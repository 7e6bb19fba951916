"""Audio encode: seconds per format (wav/flac/mp3/opus) of one stereo 48 kHz song through
`deployments.audio_codec.encode`, the function the music deployment's encode threads call. CPU only
(no torch), so it measures the node's CPU on a GPU machine too."""

from __future__ import annotations

import time
from typing import Any

from bench.gpu.measure import stats_of
from bench.gpu.settings import Workload

SAMPLE_RATE = 48_000


def synthetic_song(seconds: float, sample_rate: int = SAMPLE_RATE):
    """(2, samples) float32: a chord with a slow tremolo and a little noise, deterministic. Not silence
    (encoders shortcut it) and not pure noise (the worst case of every compressor)."""
    import numpy as np

    n = int(round(seconds * sample_rate))
    t = np.arange(n, dtype=np.float64) / sample_rate
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.18, 329.63, 440.0)) / 4
    trem = 0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t)
    noise = np.random.default_rng(0).standard_normal((2, n)) * 0.02
    left, right = chord * trem, np.roll(chord, 240) * trem
    return (0.5 * np.stack([left, right]) + noise).astype(np.float32)


def bench_codec(wl: Workload, repeats: int = 1) -> dict[str, Any]:
    from deployments.audio_codec import CODECS, encode

    audio = synthetic_song(wl.codec_song_s)
    raw = int(audio.nbytes)
    formats: dict[str, Any] = {}
    for fmt in CODECS:
        samples, size = [], 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            size = len(encode(audio, SAMPLE_RATE, fmt))
            samples.append(time.perf_counter() - t0)
        st = stats_of(samples)
        formats[fmt] = {"encode_s": st["best_s"], "samples_s": st["samples_s"], "bytes": size,
                        "realtime_x": wl.codec_song_s / st["best_s"] if st["best_s"] > 0 else None}
    return {"song_s": wl.codec_song_s, "sample_rate": SAMPLE_RATE, "channels": 2, "float32_bytes": raw,
            "repeats": repeats, "formats": formats,
            "encoder": "deployments.audio_codec.encode (libsndfile: PCM_16 wav/flac, LAME mp3, Opus in Ogg)",
            "signal": "synthetic chord with tremolo + 2% noise"}
