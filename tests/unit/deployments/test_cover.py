"""The SDXL-Turbo engine on the kit: real StableDiffusionXLPipeline code, random weights."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from deployments.config import CoverArgs
from deployments.cover import CoverEngine, CoverRequest, cover_prompt
from serve_app.localdev.cluster import MODELS

pytestmark = pytest.mark.models  # runs real model code on the kits: the slower unit tests


@pytest.fixture(scope="module")
def engine(kits) -> CoverEngine:
    return CoverEngine(CoverArgs(model=str(MODELS / "sdxl-turbo-kit"), num_threads=1))


def test_cover_is_a_512_png(engine):
    [res] = engine.generate_batch([CoverRequest(prompt=cover_prompt("synthwave, neon"), seed=3)])
    img = Image.open(io.BytesIO(res.png))
    assert img.format == "PNG" and img.size == (512, 512) and img.mode == "RGB"
    assert res.seed == 3 and res.steps == 1


def test_seeded_and_batched(engine):
    a, b, c = engine.generate_batch(
        [CoverRequest(prompt="jazz", seed=1), CoverRequest(prompt="jazz", seed=2), CoverRequest(prompt="rock", seed=1, steps=2)]
    )
    assert a.png != b.png
    assert (a.steps, b.steps, c.steps) == (1, 1, 2)
    [again] = engine.generate_batch([CoverRequest(prompt="jazz", seed=1)])
    assert Image.open(io.BytesIO(again.png)).size == (512, 512)
    random_seed = engine.generate_batch([CoverRequest(prompt="jazz", seed=-1)])[0].seed
    assert 0 <= random_seed < 2**31


def test_prompt_fits_clip():
    p = cover_prompt("x" * 1000, "A Title")
    assert len(p) <= 300 and "A Title" in p


def test_channels_last_paints_the_same_cover(engine):
    """The layout is a speed choice only: the same seed gives the same picture (within one level)."""
    import numpy as np
    import torch

    default_layout = CoverEngine(CoverArgs(model=str(MODELS / "sdxl-turbo-kit"), num_threads=1, channels_last=False,
                                           warmup=False))
    conv = next(m for m in engine.pipe.vae.decoder.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    req = [CoverRequest(prompt="jazz", seed=11)]
    a, b = (np.asarray(Image.open(io.BytesIO(e.generate_batch(req)[0].png))).astype(int) for e in (engine, default_layout))
    assert a.shape == b.shape == (512, 512, 3)
    assert np.abs(a - b).max() <= 2 and (a != b).mean() < 0.01
    assert a.std() > 1  # a real picture, not a blank


def test_cover_model_loads_through_autopipeline(kits, monkeypatch):
    """AutoPipelineForText2Image picks the class from model_index.json: the kit's SDXL pipeline here,
    another few-step text-to-image model when cover.engine.model names one."""
    import diffusers

    calls = []
    real = diffusers.AutoPipelineForText2Image.from_pretrained.__func__

    def spy(cls, source, **kwargs):
        calls.append(source)
        return real(cls, source, **kwargs)

    monkeypatch.setattr(diffusers.AutoPipelineForText2Image, "from_pretrained", classmethod(spy))
    engine = CoverEngine(CoverArgs(model=str(MODELS / "sdxl-turbo-kit"), num_threads=1, warmup=False))
    assert calls == [str(MODELS / "sdxl-turbo-kit")]
    assert type(engine.pipe).__name__ == "StableDiffusionXLPipeline"


def test_a_separate_vae_replaces_the_pipelines_and_never_upcasts(kits, tmp_path):
    """cover.engine.vae (prod: madebyollin/sdxl-vae-fp16-fix) is loaded as an AutoencoderKL and set on
    the pipeline with force_upcast off, so fp16 replicas decode in fp16 instead of fp32 every call."""
    import json
    import shutil

    vae_dir = tmp_path / "sdxl-vae-fp16-fix"
    shutil.copytree(MODELS / "sdxl-turbo-kit" / "vae", vae_dir)
    config = json.loads((vae_dir / "config.json").read_text())
    (vae_dir / "config.json").write_text(json.dumps({**config, "force_upcast": True}))  # as SDXL's own VAE says
    engine = CoverEngine(CoverArgs(model=str(MODELS / "sdxl-turbo-kit"), vae=str(vae_dir), num_threads=1,
                                   warmup=False))
    assert engine.pipe.vae.config._name_or_path == str(vae_dir)
    assert engine.pipe.vae.config.force_upcast is False
    [res] = engine.generate_batch([CoverRequest(prompt="jazz", seed=5)])
    assert Image.open(io.BytesIO(res.png)).size == (512, 512)


def test_a_missing_vae_dir_fails_at_start(kits, tmp_path):
    from deployments.runtime import ModelNotAvailable

    with pytest.raises(ModelNotAvailable, match="does not exist"):
        CoverEngine(CoverArgs(model=str(MODELS / "sdxl-turbo-kit"), vae=str(tmp_path / "no-vae"), warmup=False))
