"""SDXL-Turbo kit: a tiny random-weight `diffusers.StableDiffusionXLPipeline` with the real classes.

Stands in for `stabilityai/sdxl-turbo`. Components follow diffusers' own SDXL tests
(`get_dummy_components`), except the VAE has 4 levels so the VAE scale factor is 8 like the real
model (512x512 image <-> 64x64 latents) and the scheduler is sdxl-turbo's
`EulerAncestralDiscreteScheduler` with `timestep_spacing="trailing"`. Both CLIP tokenizers are
trained offline (`tokenizers_offline.train_clip_tokenizer`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._common import Kit
from .corpus import corpus_sha256
from .tokenizers_offline import TRAINER_VERSION

KIT_NAME = "sdxl-turbo-kit"
SEED = 0
VERSION = 1

TOKENIZER = {"kind": "clip-bpe-eow", "vocab_size_target": 1280, "model_max_length": 77}

UNET = {
    "block_out_channels": [2, 4],
    "layers_per_block": 2,
    "sample_size": 64,  # default height/width = 64 * 8 = 512 like sdxl-turbo
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    "attention_head_dim": [2, 4],
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 8,
    "transformer_layers_per_block": [1, 2],
    "projection_class_embeddings_input_dim": 80,  # 6 * addition_time_embed_dim + projection_dim (32)
    "cross_attention_dim": 64,  # text_encoder hidden (32) + text_encoder_2 hidden (32)
    "norm_num_groups": 1,
}

VAE = {
    "block_out_channels": [8, 8, 16, 16],  # 4 levels -> vae_scale_factor 8
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 512,
    "scaling_factor": 0.13025,  # SDXL VAE's
    "force_upcast": False,
}

# Shared by text_encoder (CLIPTextModel) and text_encoder_2 (CLIPTextModelWithProjection).
TEXT_ENCODER = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "layer_norm_eps": 1e-05,
    "num_attention_heads": 4,
    "num_hidden_layers": 5,
    "hidden_act": "gelu",
    "projection_dim": 32,
    "max_position_embeddings": 77,
}

# sdxl-turbo's scheduler_config.json
SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "trailing",
    "trained_betas": None,
}


def spec() -> dict[str, Any]:
    return {
        "version": VERSION,
        "seed": SEED,
        "corpus_sha256": corpus_sha256(),
        "tokenizer": {**TOKENIZER, "trainer_version": TRAINER_VERSION},
        "unet": UNET,
        "vae": VAE,
        "text_encoder": TEXT_ENCODER,
        "scheduler": SCHEDULER,
    }


def make_pipeline():
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from .tokenizers_offline import train_clip_tokenizer

    tokenizer = train_clip_tokenizer(
        vocab_size=TOKENIZER["vocab_size_target"], model_max_length=TOKENIZER["model_max_length"]
    )
    tokenizer_2 = train_clip_tokenizer(
        vocab_size=TOKENIZER["vocab_size_target"], model_max_length=TOKENIZER["model_max_length"]
    )

    torch.manual_seed(SEED)
    unet = UNet2DConditionModel(**UNET)
    torch.manual_seed(SEED)
    vae = AutoencoderKL(**VAE)
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **TEXT_ENCODER,
    )
    torch.manual_seed(SEED)
    text_encoder = CLIPTextModel(text_config)
    torch.manual_seed(SEED + 1)
    text_encoder_2 = CLIPTextModelWithProjection(text_config)
    scheduler = EulerAncestralDiscreteScheduler(**SCHEDULER)
    for m in (unet, vae, text_encoder, text_encoder_2):
        m.eval()
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )


def _write_vocab_and_merges(tok_dir: Path) -> None:
    """Also write the classic `vocab.json` + `merges.txt` pair next to `tokenizer.json`."""
    data = json.loads((tok_dir / "tokenizer.json").read_text())
    model = data["model"]
    (tok_dir / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False) + "\n")
    lines = ["#version: 0.2"]
    for m in model["merges"]:
        lines.append(" ".join(m) if isinstance(m, list) else m)
    (tok_dir / "merges.txt").write_text("\n".join(lines) + "\n")


def build(out: Path) -> dict[str, Any]:
    import time

    import torch
    from diffusers import StableDiffusionXLPipeline

    pipe = make_pipeline()
    pipe.save_pretrained(out)
    for sub in ("tokenizer", "tokenizer_2"):
        _write_vocab_and_merges(out / sub)

    t0 = time.perf_counter()
    loaded = StableDiffusionXLPipeline.from_pretrained(out, add_watermarker=False)
    load_s = time.perf_counter() - t0
    loaded.set_progress_bar_config(disable=True)
    image = loaded(
        prompt="lofi hip hop, cover art",
        num_inference_steps=1,
        guidance_scale=0.0,
        height=128,
        width=128,
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    assert image.size == (128, 128), image.size
    return {
        "vae_scale_factor": loaded.vae_scale_factor,
        "default_size": UNET["sample_size"] * loaded.vae_scale_factor,
        "tokenizer_vocab_size": len(loaded.tokenizer),
        "smoke_load_seconds": round(load_s, 3),
    }


KIT = Kit(
    name=KIT_NAME,
    architecture="StableDiffusionXLPipeline (UNet2DConditionModel text_time + 2x CLIP + AutoencoderKL f8)",
    stands_in_for="stabilityai/sdxl-turbo",
    description="Tiny random-weight SDXL-Turbo pipeline (1 step, guidance 0, 512x512 default).",
    spec=spec,
    build=build,
    required_files=("model_index.json", "unet/config.json", "vae/config.json", "tokenizer_2/tokenizer.json"),
)
