"""The in-place Oobleck decoder: the same audio, bit for bit, as diffusers' own decoder."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderOobleck
from diffusers.models.autoencoders.autoencoder_oobleck import OobleckDecoder, Snake1d

from deployments import oobleck
from deployments.config import MusicArgs
from deployments.music import MusicEngine, MusicRequest
from serve_app.localdev.cluster import MODELS

pytestmark = pytest.mark.models  # runs real model code on the kits: the slower unit tests

VAE_DIR = MODELS / "acestep-v15-turbo-kit" / "vae"


def load_vae(fast: bool) -> AutoencoderOobleck:
    """The kit's VAE with non-trivial Snake parameters (the kit's are all zeros: alpha = beta = 1)."""
    vae = AutoencoderOobleck.from_pretrained(VAE_DIR).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in vae.modules():
            if isinstance(module, Snake1d):
                module.alpha.normal_(0.0, 0.3, generator=gen)
                module.beta.normal_(0.0, 0.3, generator=gen)
    if fast:
        assert oobleck.speed_up_decoder(vae) > 0
    return vae


@pytest.fixture(scope="module")
def vaes(kits):
    return load_vae(fast=False), load_vae(fast=True)


@pytest.fixture
def latents():
    return torch.randn(1, 16, 40, generator=torch.Generator().manual_seed(1))  # 1.6 s of audio


def test_decode_is_bit_identical_and_leaves_the_latents_alone(vaes, latents):
    reference, fast = vaes
    before = latents.clone()
    with torch.inference_mode():
        want = reference.decode(latents).sample
        got = fast.decode(latents).sample
    assert got.shape == want.shape == (1, 2, 40 * 1920)
    assert torch.equal(got, want)
    assert torch.equal(latents, before)


@pytest.mark.parametrize("chunk", [1, 1000, 10**9])
def test_any_chunk_size_gives_the_same_audio(vaes, latents, monkeypatch, chunk):
    """Chunks that split the signal unevenly (and a chunk of one element per channel) change nothing."""
    reference, fast = vaes
    monkeypatch.setattr(oobleck, "CPU_CHUNK_ELEMENTS", chunk)
    short = latents[..., :6]
    with torch.inference_mode():
        assert torch.equal(fast.decode(short).sample, reference.decode(short).sample)


def test_batched_and_tiled_decoding_match(vaes):
    reference, fast = vaes
    z = torch.randn(2, 16, 24, generator=torch.Generator().manual_seed(2))
    for vae in vaes:
        vae.enable_tiling()
        vae.tile_latent_min_length, vae.tile_latent_overlap = 10, 2  # several overlapping tiles
    try:
        with torch.inference_mode():
            assert torch.equal(fast.decode(z).sample, reference.decode(z).sample)
    finally:
        for vae in vaes:
            vae.disable_tiling()


def test_training_mode_falls_back_to_diffusers(vaes, latents):
    """With autograd on, gradients flow as they do through diffusers' code."""
    reference, fast = vaes
    z = latents[..., :4].clone().requires_grad_(True)
    fast.decode(z).sample.square().mean().backward()
    grad_fast = z.grad.clone()
    z.grad = None
    reference.decode(z).sample.square().mean().backward()
    assert torch.allclose(grad_fast, z.grad)


def test_only_diffusers_own_decoder_is_swapped():
    class CustomDecoder(OobleckDecoder):
        pass

    vae = AutoencoderOobleck.from_pretrained(VAE_DIR)
    vae.decoder.__class__ = CustomDecoder
    assert oobleck.speed_up_decoder(vae) == 0
    assert oobleck.speed_up_decoder(torch.nn.Linear(2, 2)) == 0


def test_music_engine_uses_it_unless_told_not_to(kits):
    kit = str(MODELS / "acestep-v15-turbo-kit")
    fast = MusicEngine(MusicArgs(model=kit, num_threads=1, warmup=False))
    plain = MusicEngine(MusicArgs(model=kit, num_threads=1, warmup=False, fast_vae_decoder=False))
    assert type(fast.pipe.vae.decoder) is oobleck.FastOobleckDecoder
    assert type(plain.pipe.vae.decoder) is OobleckDecoder
    req = MusicRequest(tags="rock", lyrics="[verse]\nla la", duration_s=2.0, seed=7)
    assert fast.generate(req)[0].audio == plain.generate(req)[0].audio  # the same encoded file


@pytest.mark.parametrize("inplace", [False, True])
def test_snake_on_strided_views_gives_diffusers_values(vaes, inplace):
    """Snake1d accepts any (batch, channels, ...) tensor. For views whose reshape must copy (a
    transposed 4-D tensor), writing through the reshape would lose the result: both modes must
    still return exactly diffusers' values."""
    reference, fast = vaes
    ref_snake, fast_snake = reference.decoder.block[0].snake1, fast.decoder.block[0].snake1
    channels = ref_snake.alpha.shape[1]
    base = torch.randn(2, channels, 8, 6, generator=torch.Generator().manual_seed(3))
    for view in (base.transpose(2, 3), base[..., ::2], base):
        with torch.inference_mode():
            want = ref_snake(view)
            got = fast_snake(view.clone() if view is base else view, inplace=inplace)
        assert torch.equal(got, want)
