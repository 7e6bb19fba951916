"""Source audio for edits (deployments.audio_codec.load_source / probe) and the repaint splice
(deployments.music.splice / match_level): numpy and soundfile only, no model."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import soundfile as sf

from deployments.audio_codec import MAX_SOURCE_S, SourceInfo, encode, load_source, probe
from deployments.music import CROSSFADE_S, MAX_LEVEL_GAIN_DB, match_level, splice

SR = 48_000


def sine(freq: float, seconds: float, rate: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def file_bytes(frames: np.ndarray, rate: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    """`frames` is (samples, channels) or (samples,)."""
    buf = io.BytesIO()
    sf.write(buf, frames, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


# -- probe --


@pytest.mark.parametrize(("fmt", "subtype", "name"), [("WAV", "PCM_16", "wav"), ("FLAC", "PCM_16", "flac"),
                                                      ("MP3", "MPEG_LAYER_III", "mp3"), ("OGG", "VORBIS", "ogg")])
def test_probe_reads_length_rate_channels_and_container(fmt, subtype, name):
    data = file_bytes(np.zeros((44_100, 1), np.float32), 44_100, fmt, subtype)
    info = probe(data)
    assert isinstance(info, SourceInfo) and isinstance(info, tuple)
    duration, rate, channels, container = info
    assert (rate, channels, container) == (44_100, 1, name)
    assert duration == pytest.approx(1.0, abs=0.06)  # mp3/ogg headers count encoder padding frames


# -- load_source: refusals, each with a message that says what is wrong and names no path --


def zero_sample_wav() -> bytes:
    return file_bytes(np.zeros((0, 2), np.float32), SR)


@pytest.mark.parametrize(("data", "max_seconds", "words"), [
    (b"", 600.0, "empty (0 bytes)"),
    (b"this is not audio at all" * 40, 600.0, "not a readable wav, flac, mp3 or ogg file"),
    (zero_sample_wav(), 600.0, "no samples"),
    (file_bytes(np.zeros((3 * 8000, 1), np.float32), 8000), 2.5, "3.0 s long; the most is 2.5 s"),
    (file_bytes(np.zeros((800, 1), np.float32), 8000, "AIFF", "PCM_16"), 600.0, "AIFF, not one of wav, flac, mp3, ogg"),
    (file_bytes(np.full((800, 1), np.nan, np.float32), 8000, "WAV", "FLOAT"), 600.0, "NaN or infinite"),
], ids=["empty", "garbage", "zero-samples", "too-long", "aiff", "nan"])
def test_load_source_refuses_bad_audio_saying_why(data, max_seconds, words):
    with pytest.raises(ValueError, match=re.escape(words)) as err:
        load_source(data, SR, max_seconds=max_seconds)
    text = str(err.value)
    assert "BytesIO" not in text and "/" not in text and "\\" not in text, text


def test_a_truncated_file_is_refused_or_read_as_what_it_holds():
    """A wav cut mid-file: libsndfile reads the samples that are there (no crash, no partial frame)."""
    whole = file_bytes(sine(440, 1.0, SR)[:, None], SR)
    cut = whole[: len(whole) // 2]
    try:
        audio = load_source(cut, SR, max_seconds=MAX_SOURCE_S)
    except ValueError:
        return
    assert audio.shape[0] == 2 and 0 < audio.shape[1] <= SR


# -- load_source: conversion --


def test_a_44k_mono_sine_becomes_48k_stereo_at_the_same_pitch():
    seconds, freq = 1.5, 1000.0
    audio = load_source(file_bytes(sine(freq, seconds, 44_100)[:, None], 44_100, "WAV", "FLOAT"), SR,
                        max_seconds=MAX_SOURCE_S)
    assert audio.dtype == np.float32 and audio.flags.c_contiguous
    assert audio.shape[0] == 2 and abs(audio.shape[1] - seconds * SR) <= 1  # soxr keeps the duration
    assert np.array_equal(audio[0], audio[1])  # mono copied to both channels
    mid = audio[0, SR // 10: -SR // 10]  # away from the resampler's edges
    spectrum = np.abs(np.fft.rfft(mid * np.hanning(mid.size)))
    peak_hz = np.argmax(spectrum) * SR / mid.size
    assert abs(peak_hz - freq) < 1.0, peak_hz  # bins are 0.83 Hz wide here
    crossings = np.count_nonzero(np.diff(np.signbit(mid)))
    assert abs(crossings / (mid.size / SR) - 2 * freq) < 4, crossings  # 2 zero crossings per cycle
    assert np.sqrt(np.mean(mid.astype(np.float64) ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_a_source_at_the_model_rate_is_returned_exactly_as_decoded():
    frames = np.stack([sine(220, 0.5, SR), sine(330, 0.5, SR, 0.25)], axis=1)
    audio = load_source(file_bytes(frames, SR, "WAV", "FLOAT"), SR, max_seconds=MAX_SOURCE_S)
    assert audio.shape == (2, SR // 2) and np.array_equal(audio, frames.T)


def test_more_than_two_channels_keep_the_first_two():
    frames = np.stack([np.full(800, v, np.float32) for v in (0.1, 0.2, 0.3, 0.4)], axis=1)
    audio = load_source(file_bytes(frames, SR, "WAV", "FLOAT"), SR, max_seconds=MAX_SOURCE_S)
    assert audio.shape == (2, 800)
    assert np.allclose(audio[0], 0.1) and np.allclose(audio[1], 0.2)


def test_the_engines_own_encoded_files_load_back():
    song = np.stack([sine(440, 0.5, SR), sine(440, 0.5, SR)])
    for fmt in ("wav", "flac", "mp3", "opus"):
        audio = load_source(encode(song, SR, fmt), SR, max_seconds=MAX_SOURCE_S)
        assert audio.shape[0] == 2 and abs(audio.shape[1] - song.shape[1]) < SR // 10, (fmt, audio.shape)


# -- splice: the source outside the window, bit for bit; crossfades inside it --

XF = int(round(CROSSFADE_S * SR))  # 1440 samples


def pair(n: int = SR) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (rng.standard_normal((2, n)).astype(np.float32) * 0.1,  # generated
            rng.standard_normal((2, n)).astype(np.float32) * 0.1)  # source


def test_splice_keeps_the_source_outside_the_window_and_crossfades_only_inside():
    gen, src = pair()
    a, b = 12_000, 30_000
    out = splice(gen, src, a, b, XF)
    assert out.dtype == np.float32 and out.shape == src.shape
    assert np.array_equal(out[:, :a], src[:, :a]) and np.array_equal(out[:, b:], src[:, b:])
    assert np.array_equal(out[:, a + XF: b - XF], gen[:, a + XF: b - XF])  # the window's middle is the new audio
    fade = out[:, a: a + XF]
    assert not np.array_equal(fade, src[:, a: a + XF]) and not np.array_equal(fade, gen[:, a: a + XF])


def test_the_crossfade_is_equal_power():
    n, a, b = 10_000, 2_000, 8_000
    ones, zeros = np.ones((2, n), np.float32), np.zeros((2, n), np.float32)
    fall = splice(zeros, ones, a, b, XF)[0, a: a + XF]  # the source's gain over the fade-in
    rise = splice(ones, zeros, a, b, XF)[0, a: a + XF]  # the new audio's gain
    assert np.allclose(fall ** 2 + rise ** 2, 1.0, atol=1e-6)
    assert np.all(np.diff(rise) > 0) and rise[0] < 0.01 and rise[-1] > 0.99
    back = splice(ones, zeros, a, b, XF)[0, b - XF: b]  # at the far edge the new audio fades out again
    assert np.all(np.diff(back) < 0)


def test_an_edge_with_nothing_kept_beyond_it_has_no_crossfade():
    gen, src = pair()
    out = splice(gen, src, 0, SR // 2, XF)  # the window starts the song
    assert np.array_equal(out[:, : SR // 2 - XF], gen[:, : SR // 2 - XF])
    tail = splice(gen, src, SR // 2, SR, XF)  # extend's window: to the end
    assert np.array_equal(tail[:, SR // 2 + XF:], gen[:, SR // 2 + XF:])


def test_a_window_shorter_than_two_crossfades_fades_over_half_of_it_each_side():
    gen, src = pair()
    a, b = 10_000, 10_000 + XF  # one crossfade long
    out = splice(gen, src, a, b, XF)
    assert np.array_equal(out[:, :a], src[:, :a]) and np.array_equal(out[:, b:], src[:, b:])


def test_splice_refuses_a_window_outside_the_audio():
    gen, src = pair(1000)
    for a, b in ((-1, 10), (10, 10), (5, 1001)):
        with pytest.raises(ValueError):
            splice(gen, src, a, b, XF)


# -- match_level: undoing the pipeline's -1 dBFS normalization --


def test_match_level_undoes_a_gain_applied_to_the_whole_output():
    src = np.stack([sine(220, 2.0, SR, 0.05)] * 2)  # a quiet source (-29 dBFS peak)
    a, b = SR // 2, 3 * SR // 2
    rerendered = src * 17.8  # the pipeline's normalization brings it to a 0.89 peak
    rerendered[:, a:b] = np.stack([sine(330, 1.0, SR, 0.89)] * 2)  # the window, new at the same gain
    gain = match_level(rerendered, src, a, b, SR)
    assert gain == pytest.approx(1 / 17.8, rel=1e-4)


def test_match_level_leaves_short_or_silent_context_alone_and_never_clips():
    src = np.stack([sine(220, 2.0, SR, 0.5)] * 2)
    gen = src * 0.1
    assert match_level(gen, src, 100, src.shape[1] - 100, SR) == 1.0  # 200 samples kept: too few to measure
    assert match_level(gen, np.zeros_like(src), SR // 2, SR, SR) == 1.0  # a silent source
    assert match_level(np.zeros_like(src), src, SR // 2, SR, SR) == 1.0  # a silent render
    loud = gen.copy()
    loud[:, SR // 2: SR] = 0.9  # the window would be 9 x 0.9 after a 10x gain
    gain = match_level(loud, src, SR // 2, SR, SR)
    assert gain == pytest.approx(1 / 0.9) and gain < 10
    huge = src * 1e-3  # a 60 dB mismatch is clamped
    assert match_level(huge, src, SR // 2, SR, SR) <= 10 ** (MAX_LEVEL_GAIN_DB / 20) + 1e-9
