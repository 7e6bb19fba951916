"""The ACE-Step 1.5 engine on the kit: real AceStepPipeline code, random weights."""

from __future__ import annotations

import threading

import pytest

from deployments.audio_codec import decode
from deployments.config import MusicArgs
from deployments.music import MusicEngine, MusicRequest, SongCancelled
from serve_app.localdev.cluster import MODELS

pytestmark = pytest.mark.models  # runs real model code on the kits: the slower unit tests

FRAME = 1920  # samples per latent frame at 48 kHz


@pytest.fixture(scope="module")
def engine(kits) -> MusicEngine:
    # Warmed up as configs/dev.yaml does (10 s), not at the 30 s default: a quicker module setup.
    return MusicEngine(MusicArgs(model=str(MODELS / "acestep-v15-turbo-kit"), num_threads=1, warmup_duration_s=10.0))


@pytest.mark.parametrize(("fmt", "container"), [("wav", "WAV"), ("flac", "FLAC"), ("mp3", "MP3"), ("opus", "OGG")])
def test_each_format_decodes_to_the_requested_duration(engine, fmt, container):
    import io

    import soundfile as sf

    [res] = engine.generate(MusicRequest(tags="pop, piano", lyrics="[verse]\nhello", duration_s=10.0, seed=1,
                                         audio_format=fmt))
    assert sf.info(io.BytesIO(res.audio)).format == container
    frames, sr = decode(res.audio)
    assert sr == 48000 and frames.shape[1] == 2
    assert abs(frames.shape[0] - 10.0 * sr) <= FRAME
    assert res.sample_rate == 48000 and res.channels == 2
    assert len(res.audio) < 10 * 48000 * 2 * 4  # encoded, never raw float32


def test_seed_reproduces_and_another_seed_differs(engine):
    req = dict(tags="rock", lyrics="[chorus]\nyeah", duration_s=10.0, steps=2)
    [a] = engine.generate(MusicRequest(seed=42, **req))
    [b] = engine.generate(MusicRequest(seed=42, **req))
    [c] = engine.generate(MusicRequest(seed=43, **req))
    assert a.audio == b.audio and a.seed == b.seed == 42
    assert c.audio != a.audio


def test_random_seed_is_returned_and_reusable(engine):
    [a] = engine.generate(MusicRequest(tags="jazz", duration_s=10.0, steps=2, seed=-1))
    assert 0 <= a.seed < 2**31
    [again] = engine.generate(MusicRequest(tags="jazz", duration_s=10.0, steps=2, seed=a.seed))
    assert again.audio == a.audio


def test_turbo_defaults_and_ignored_guidance(engine):
    [res] = engine.generate(MusicRequest(tags="pop", duration_s=10.0, guidance_scale=15.0, seed=0))
    assert res.steps == 8 and res.guidance_scale == 1.0
    assert any("guidance_scale 15 ignored" in n for n in res.notes)


def test_progress_counts_every_step(engine):
    seen = []
    engine.generate(MusicRequest(tags="pop", duration_s=10.0, steps=5, seed=0), progress=lambda k, n: seen.append((k, n)))
    assert seen == [(k, 5) for k in range(1, 6)]


def test_cancel_stops_within_one_step(engine):
    cancel = threading.Event()
    seen = []

    def progress(k, n):
        seen.append(k)
        if k == 2:
            cancel.set()

    with pytest.raises(SongCancelled):
        engine.generate(MusicRequest(tags="pop", duration_s=10.0, steps=8, seed=0), progress=progress, cancel=cancel)
    assert seen == [1, 2]


def test_cancelled_before_start_never_renders(engine):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(SongCancelled):
        engine.generate(MusicRequest(tags="pop", duration_s=10.0), cancel=cancel)


def test_unknown_format_is_refused(engine):
    with pytest.raises(ValueError, match="audio_format"):
        engine.generate(MusicRequest(tags="pop", duration_s=10.0, audio_format="aiff"))


def test_generate_is_render_then_encode(engine):
    """The deployment renders on one thread and encodes on another: the same file as generate()."""
    req = MusicRequest(tags="funk", lyrics="[verse]\nslap", duration_s=10.0, steps=2, seed=5, audio_format="flac")
    [rendered] = engine.render(req)  # one take
    assert rendered.audio.shape == (2, 10 * 48000) and rendered.audio.dtype.name == "float32"
    split, [whole] = engine.encode(rendered), engine.generate(req)
    assert split.audio == whole.audio
    assert (split.seed, split.steps, split.num_samples, split.extension) == (5, 2, 10 * 48000, "flac")
    assert split.model_s > 0 and split.encode_s > 0 and split.finished_at >= split.started_at


def test_warm_up_renders_one_step_at_its_configured_length(engine, monkeypatch):
    assert MusicArgs().warmup_duration_s == 30.0  # a realistic length by default, not 1 s
    seen = []
    monkeypatch.setattr(engine, "generate", lambda req, *a, **kw: seen.append(req))
    engine.warm_up()
    assert [(r.duration_s, r.steps) for r in seen] == [(10.0, 1)]
