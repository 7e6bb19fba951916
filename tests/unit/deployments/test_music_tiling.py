"""ACE-Step's VAE decodes long songs in overlapping tiles, with the same audio as one untiled call.

Untiled, the Oobleck decoder's activations grow with the song (gigabytes at full size for a few
minutes of audio, past 2^31 elements for the longest songs); tiled, each decoder call sees at most
`vae_tile_frames` latent frames. The kit has the full-size architecture's receptive field (the same
kernels, dilations and strides), so what holds for its seams holds for the real model's.
"""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from deployments import oobleck
from deployments.config import MusicArgs
from deployments.music import MusicEngine, MusicRequest
from serve_app.localdev.cluster import MODELS

pytestmark = pytest.mark.models  # runs real model code on the kits: the slower unit tests

KIT = str(MODELS / "acestep-v15-turbo-kit")

# Tiled vs untiled, measured on the kit (12 s songs, 4 tiles of 128 frames, overlap 16): at most
# 6e-7 apart on a signal normalized to a 0.89 peak, i.e. float32 rounding (convolutions over
# different lengths sum in different orders). The bound leaves ~15x headroom for other CPUs'
# kernels; a seam (an overlap below the decoder's ~8-frame receptive field) is >= 1e-3 off
# (test_a_too_small_overlap_shows_seams), so the bound still tells a seam from rounding.
TILED_ATOL = 1e-5

SONG = dict(tags="rock, guitar", lyrics="[verse]\nlong roads", duration_s=12.0, steps=1, seed=3)
SMALL_TILES = dict(vae_tile_frames=128, vae_tile_overlap_frames=16)  # 300 frames -> 4 tiles


def engine(**kw) -> MusicEngine:
    return MusicEngine(MusicArgs(model=KIT, num_threads=1, warmup=False, **kw))


def decoder_calls(eng: MusicEngine) -> list[int]:
    """Latent frames of every decoder call from now on (a forward pre-hook on the decoder)."""
    seen: list[int] = []
    eng.pipe.vae.decoder.register_forward_pre_hook(lambda _mod, inputs: seen.append(int(inputs[0].shape[-1])))
    return seen


def render(eng: MusicEngine, **kw) -> np.ndarray:
    return eng.render(MusicRequest(**{**SONG, **kw}))[0].audio  # take 0, the only one


@pytest.fixture(scope="module")
def untiled(kits) -> np.ndarray:
    return render(engine(vae_tiling=False))


def test_the_engine_tiles_by_default_with_ace_steps_tile_sizes(kits):
    args = MusicArgs()
    assert (args.vae_tiling, args.vae_tile_frames, args.vae_tile_overlap_frames) == (True, 512, 64)
    vae = engine().pipe.vae
    assert vae.use_tiling is True  # diffusers ships it off
    assert (vae.tile_latent_min_length, vae.tile_latent_overlap) == (512, 64)
    assert engine(vae_tiling=False).pipe.vae.use_tiling is False


def test_a_song_longer_than_one_tile_decodes_in_several_calls(kits):
    eng = engine()  # the defaults: 512-frame windows, 64 frames of overlap, a 384-frame stride
    calls = decoder_calls(eng)
    eng.render(MusicRequest(**{**SONG, "duration_s": 25.0}))  # 625 latent frames
    assert calls == [448, 305]  # windows [0, 448) and [320, 625): never more than a tile
    calls.clear()
    eng.render(MusicRequest(**{**SONG, "duration_s": 10.0}))  # 250 frames: within one tile
    assert calls == [250]


def test_untiled_decodes_the_whole_song_at_once(kits):
    eng = engine(vae_tiling=False)
    calls = decoder_calls(eng)
    eng.render(MusicRequest(**{**SONG, "duration_s": 25.0}))
    assert calls == [625]


@pytest.mark.parametrize("fast", [True, False], ids=["fast-decoder", "diffusers-decoder"])
def test_tiled_audio_matches_untiled(untiled, fast):
    eng = engine(fast_vae_decoder=fast, **SMALL_TILES)
    assert (type(eng.pipe.vae.decoder) is oobleck.FastOobleckDecoder) is fast
    calls = decoder_calls(eng)
    tiled = render(eng)
    assert len(calls) == 4 and max(calls) <= 128
    assert tiled.shape == untiled.shape == (2, 12 * 48000)
    diff = float(np.abs(tiled - untiled).max())
    print(f"\ntiled vs untiled ({'fast' if fast else 'diffusers'} decoder): max |diff| {diff:.2e}")
    assert diff <= TILED_ATOL


def test_tiling_gives_the_same_audio_with_and_without_the_fast_decoder(kits):
    """The in-place decoder is bit-identical per call, so per tile, so for the joined song."""
    fast = render(engine(fast_vae_decoder=True, **SMALL_TILES))
    plain = render(engine(fast_vae_decoder=False, **SMALL_TILES))
    assert np.array_equal(fast, plain)


def test_a_too_small_overlap_shows_seams(untiled):
    """The tolerance above is meaningful: tiles without enough context do differ at their seams."""
    seamed = render(engine(vae_tile_frames=128, vae_tile_overlap_frames=0))
    assert float(np.abs(seamed - untiled).max()) > 100 * TILED_ATOL


def test_tiles_must_be_wider_than_their_overlaps():
    with pytest.raises(ValidationError, match="more than twice"):
        MusicArgs(vae_tile_frames=128, vae_tile_overlap_frames=64)
    MusicArgs(vae_tiling=False, vae_tile_frames=128, vae_tile_overlap_frames=64)  # not checked when off
