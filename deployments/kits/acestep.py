"""ACE-Step 1.5 turbo kit: a tiny random-weight `diffusers.AceStepPipeline` with the real classes.

Stands in for `ACE-Step/acestep-v15-xl-turbo-diffusers`. Loads with
`AceStepPipeline.from_pretrained(dir)`; 48 kHz stereo, 1920 samples per latent frame (25 latents/s),
turbo (no CFG, 8 steps). Output is noise-like audio, but with the shapes, rates, schedule and
callbacks of the real pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._common import Kit
from .corpus import corpus_sha256
from .tokenizers_offline import TRAINER_VERSION

KIT_NAME = "acestep-v15-turbo-kit"
SEED = 1234
VERSION = 2  # 2: an encoder as wide as the real one's latents (edits read sources); audio tokenizer/detokenizer

TOKENIZER = {"kind": "qwen2-bytelevel-bpe", "vocab_size_target": 1536, "model_max_length": 32768}

VAE = {
    "encoder_hidden_size": 32,  # == 2 x decoder_input_channels: Oobleck's encoder emits mean and scale
    "downsampling_ratios": [2, 4, 4, 6, 10],  # prod = 1920 -> 25 latents/s at 48 kHz
    "channel_multiples": [1, 2, 2, 2, 2],
    "decoder_channels": 8,
    "decoder_input_channels": 16,
    "audio_channels": 2,
    "sampling_rate": 48000,
}

# Qwen3 text encoder (production: Qwen3-Embedding-0.6B, hidden 1024). vocab_size comes from the tokenizer.
TEXT_ENCODER = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 16,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}

TRANSFORMER = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 16,
    "in_channels": 48,  # latents (16) + src latents (16) + chunk mask (16)
    "audio_acoustic_hidden_dim": 16,  # == VAE decoder_input_channels
    "patch_size": 2,
    "sliding_window": 16,
    "is_turbo": True,
    "model_version": "turbo",
}

CONDITION_ENCODER = {
    "hidden_size": 32,  # == TRANSFORMER hidden_size (encoder_hidden_size defaults to it)
    "intermediate_size": 64,
    "text_hidden_dim": 32,  # == TEXT_ENCODER hidden_size
    "timbre_hidden_dim": 16,  # == audio_acoustic_hidden_dim
    "num_lyric_encoder_hidden_layers": 1,
    "num_timbre_encoder_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 16,
    "sliding_window": 16,
}

SCHEDULER = {"num_train_timesteps": 1, "shift": 1.0}

# The 5 Hz audio-code tokenizer and detokenizer (covers need them: the source is turned into codes).
AUDIO_TOKENIZER = {
    "hidden_size": 32, "intermediate_size": 64, "audio_acoustic_hidden_dim": 16, "pool_window_size": 5,
    "num_attention_pooler_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
    "sliding_window": 16,
}


def spec() -> dict[str, Any]:
    return {
        "version": VERSION,
        "seed": SEED,
        "corpus_sha256": corpus_sha256(),
        "tokenizer": {**TOKENIZER, "trainer_version": TRAINER_VERSION},
        "vae": VAE,
        "text_encoder": TEXT_ENCODER,
        "transformer": TRANSFORMER,
        "condition_encoder": CONDITION_ENCODER,
        "scheduler": SCHEDULER,
        "audio_tokenizer": AUDIO_TOKENIZER,
    }


BASE_TRANSFORMER = {**TRANSFORMER, "is_turbo": False, "model_version": "base"}
BASE_KIT_NAME = "acestep-v15-base-kit"


def make_pipeline(turbo: bool = True):
    """Construct the tiny pipeline in memory (deterministic weights). `turbo=False` marks the
    transformer a base checkpoint, which is all the pipeline reads to tell the two apart (the
    base kit has the turbo kit's weights: it runs the base-only tasks, extract/lego/complete)."""
    import torch
    from diffusers.pipelines.ace_step.modeling_ace_step import AceStepAudioTokenDetokenizer, AceStepAudioTokenizer
    from diffusers import (
        AceStepConditionEncoder,
        AceStepPipeline,
        AceStepTransformer1DModel,
        AutoencoderOobleck,
        FlowMatchEulerDiscreteScheduler,
    )
    from transformers import Qwen3Config, Qwen3Model

    from .tokenizers_offline import train_qwen2_tokenizer

    tokenizer = train_qwen2_tokenizer(
        vocab_size=TOKENIZER["vocab_size_target"], model_max_length=TOKENIZER["model_max_length"]
    )
    torch.manual_seed(SEED)
    vae = AutoencoderOobleck(**VAE)
    torch.manual_seed(SEED + 1)
    text_encoder = Qwen3Model(
        Qwen3Config(
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **TEXT_ENCODER,
        )
    )
    torch.manual_seed(SEED + 2)
    transformer = AceStepTransformer1DModel(**(TRANSFORMER if turbo else BASE_TRANSFORMER))
    torch.manual_seed(SEED + 3)
    condition_encoder = AceStepConditionEncoder(**CONDITION_ENCODER)
    # The real checkpoint stores VAE-encoded silence here; a deterministic small-noise stand-in keeps
    # the timbre encoder input non-degenerate.
    g = torch.Generator().manual_seed(SEED + 4)
    condition_encoder.silence_latent.copy_(0.1 * torch.randn(condition_encoder.silence_latent.shape, generator=g))
    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER)
    torch.manual_seed(SEED + 5)
    audio_tokenizer = AceStepAudioTokenizer(**AUDIO_TOKENIZER, fsq_dim=AUDIO_TOKENIZER["hidden_size"])
    torch.manual_seed(SEED + 6)
    audio_token_detokenizer = AceStepAudioTokenDetokenizer(**AUDIO_TOKENIZER)
    for m in (vae, text_encoder, transformer, condition_encoder, audio_tokenizer, audio_token_detokenizer):
        m.eval()
    return AceStepPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        condition_encoder=condition_encoder,
        scheduler=scheduler,
        audio_tokenizer=audio_tokenizer,
        audio_token_detokenizer=audio_token_detokenizer,
    )


def build(out: Path, turbo: bool = True) -> dict[str, Any]:
    import time

    import torch
    from diffusers import AceStepPipeline

    pipe = make_pipeline(turbo)
    pipe.save_pretrained(out)

    # Smoke check: reload through the production loader and run 1 s of audio.
    t0 = time.perf_counter()
    loaded = AceStepPipeline.from_pretrained(out)
    load_s = time.perf_counter() - t0
    loaded.set_progress_bar_config(disable=True)
    audio = loaded(
        prompt="pop, piano",
        lyrics="[verse]\nhello\n[chorus]\n你好 世界 こんにちは",
        audio_duration=1.0,
        num_inference_steps=2,
        guidance_scale=1.0,  # turbo: the pipeline's default 7.0 only triggers a warning
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).audios
    assert audio.shape == (1, 2, 48000), audio.shape
    assert bool(loaded.is_turbo) == turbo
    return {
        "sample_rate": loaded.sample_rate,
        "latents_per_second": loaded.latents_per_second,
        "samples_per_latent": 1920,
        "audio_channels": VAE["audio_channels"],
        "tokenizer_vocab_size": len(loaded.tokenizer),
        "smoke_load_seconds": round(load_s, 3),
    }


KIT = Kit(
    name=KIT_NAME,
    architecture="AceStepPipeline (AutoencoderOobleck + Qwen3Model + AceStepTransformer1DModel turbo)",
    stands_in_for="ACE-Step/acestep-v15-xl-turbo-diffusers",
    description="Tiny random-weight ACE-Step 1.5 turbo pipeline (48 kHz stereo, 25 latents/s).",
    spec=spec,
    build=build,
    required_files=("model_index.json", "vae/config.json", "transformer/config.json", "tokenizer/tokenizer.json"),
)


def base_spec() -> dict[str, Any]:
    return {**spec(), "transformer": BASE_TRANSFORMER}


def build_base(out: Path) -> dict[str, Any]:
    return build(out, turbo=False)


BASE_KIT = Kit(
    name=BASE_KIT_NAME,
    architecture="AceStepPipeline (AutoencoderOobleck + Qwen3Model + AceStepTransformer1DModel base)",
    stands_in_for="ACE-Step/acestep-v15-xl-base-diffusers",
    description="The turbo kit's weights marked a base checkpoint: the tasks turbo lacks (extract, lego, complete).",
    spec=base_spec,
    build=build_base,
    required_files=KIT.required_files,
)
