"""Takes on the kit: one request renders `takes` songs in one pipeline batch, take k from seed
take_seed(seed, k), and take 0 is the song a one-take request renders."""

from __future__ import annotations

import numpy as np
import pytest

from deployments.audio_codec import decode
from deployments.config import MusicArgs
from deployments.music import MusicEngine, MusicRequest
from deployments.protocol import MAX_TAKES, take_seed
from serve_app.localdev.cluster import MODELS
from tests.unit.deployments.music_kits import PipeSpy

pytestmark = pytest.mark.models  # runs real model code on the kits: the slower unit tests

SR = 48_000
SONG = dict(tags="pop, piano", lyrics="[verse]\nhello", duration_s=3.0, steps=2, seed=11)
# A take rendered in a batch vs alone: measured at most 6e-7 apart on the kit (a 0.89 peak), i.e.
# float32 rounding (the batch's matmuls sum in other orders); 1e-5 leaves ~15x headroom, and two
# different takes are >= 1e-2 apart, so the bound still tells "the same take" from "another take".
BATCH_ATOL = 1e-5
DIFFERENT = 1e-3


@pytest.fixture(scope="module")
def engine(kits) -> MusicEngine:
    return MusicEngine(MusicArgs(model=str(MODELS / "acestep-v15-turbo-kit"), num_threads=1, warmup=False))


def test_take_0_of_a_batch_is_the_one_take_song(engine):
    [alone] = engine.render(MusicRequest(**SONG))
    batch = engine.render(MusicRequest(takes=2, **SONG))
    assert len(batch) == 2 and batch[0].audio.shape == alone.audio.shape == (2, 3 * SR)
    assert np.allclose(batch[0].audio, alone.audio, rtol=0, atol=BATCH_ATOL)


def test_every_take_is_its_own_seed_and_differs_from_the_others(engine):
    takes = engine.render(MusicRequest(takes=MAX_TAKES, **SONG))
    assert [s.take for s in takes] == list(range(MAX_TAKES))
    assert [s.seed for s in takes] == [take_seed(11, k) for k in range(MAX_TAKES)] == [11, 12, 13, 14]
    for i in range(MAX_TAKES):
        for j in range(i + 1, MAX_TAKES):
            assert np.abs(takes[i].audio - takes[j].audio).max() > DIFFERENT, (i, j)
    # Each take reproduces alone from its own seed (take 2 of seed 11 is the song of seed 13).
    [alone] = engine.render(MusicRequest(**{**SONG, "seed": takes[2].seed}))
    assert np.allclose(takes[2].audio, alone.audio, rtol=0, atol=BATCH_ATOL)


def test_takes_render_in_one_pipeline_call_with_one_generator_each(engine, monkeypatch):
    spy = PipeSpy(engine.pipe)
    monkeypatch.setattr(engine, "pipe", spy)
    seen = []
    engine.render(MusicRequest(takes=3, **SONG), progress=lambda k, n: seen.append((k, n)))
    [kw] = spy.calls
    assert kw["prompt"] == [SONG["tags"]] * 3 and kw["lyrics"] == [SONG["lyrics"]] * 3
    assert len(kw["generator"]) == 3 and kw["latents"].shape[0] == 3
    assert seen == [(1, 2), (2, 2)]  # the batch's steps, reported once


def test_generate_returns_one_encoded_result_per_take(engine):
    results = engine.generate(MusicRequest(takes=2, audio_format="flac", **SONG))
    assert [(r.take, r.seed, r.task) for r in results] == [(0, 11, "text2music"), (1, 12, "text2music")]
    assert results[0].audio != results[1].audio
    for r in results:
        frames, sr = decode(r.audio)
        assert sr == SR and frames.shape == (3 * SR, 2) and r.num_samples == 3 * SR


@pytest.mark.parametrize("takes", [0, MAX_TAKES + 1])
def test_a_take_count_out_of_range_is_refused(engine, takes):
    with pytest.raises(ValueError, match=f"takes must be 1 to {MAX_TAKES}"):
        engine.render(MusicRequest(takes=takes, **SONG))
