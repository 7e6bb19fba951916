"""SDXL-Turbo cover painter: the engine (usable without Ray) and its batched Serve deployment."""

from __future__ import annotations

import asyncio
import io
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ray import serve

from deployments.config import CoverArgs
from deployments.memory import IdleTrimmer, release_free_memory

MAX_SEED = 2**31 - 1
NEGATIVE_HINT = "text, letters, watermark, signature, blurry"


@dataclass
class CoverRequest:
    prompt: str
    seed: int = -1
    steps: int | None = None


@dataclass
class CoverResult:
    png: bytes
    width: int
    height: int
    seed: int
    steps: int
    prompt: str
    model: str
    started_at: float
    finished_at: float
    model_s: float


def cover_prompt(tags: str, title: str | None = None) -> str:
    """Album-art prompt from the song's tags; short because CLIP reads at most 77 tokens."""
    subject = f'"{title}", ' if title else ""
    return f"album cover art, {subject}{tags}, vibrant, detailed, artistic, no text"[:300]


class CoverEngine:
    def __init__(self, args: CoverArgs):
        import torch
        from diffusers import StableDiffusionXLPipeline

        from deployments.runtime import load_diffusers_pipeline, resolve_runtime

        self.args = args
        # SDXL's VAE overflows in bf16; fp16 is what sdxl-turbo ships (its fp16 weight variant).
        self.runtime = resolve_runtime(args, half=torch.float16)
        hub_fp16 = self.runtime.dtype == torch.float16 and not Path(args.model).exists()
        self.pipe = load_diffusers_pipeline(
            StableDiffusionXLPipeline, args, self.runtime, compile_attr="unet", add_watermarker=False,
            **({"variant": "fp16"} if hub_fp16 else {}),
        )
        if args.channels_last:
            for name in ("unet", "vae"):
                getattr(self.pipe, name).to(memory_format=torch.channels_last)
        if args.warmup:
            self.generate_batch([CoverRequest(prompt="warm up", seed=0)])
        release_free_memory()  # loading and warm-up temporaries

    def generate_batch(self, reqs: list[CoverRequest]) -> list[CoverResult]:
        """Paint several covers in as few pipeline calls as possible (one per distinct step count)."""
        results: list[CoverResult | None] = [None] * len(reqs)
        by_steps: dict[int, list[int]] = {}
        for i, r in enumerate(reqs):
            by_steps.setdefault(r.steps or self.args.steps, []).append(i)
        for steps, idx in by_steps.items():
            for i, res in zip(idx, self._paint([reqs[i] for i in idx], steps)):
                results[i] = res
        return results  # type: ignore[return-value]

    def _paint(self, reqs: list[CoverRequest], steps: int) -> list[CoverResult]:
        import torch

        from deployments.runtime import seed_generator

        seeds = [secrets.randbelow(MAX_SEED) if r.seed is None or r.seed < 0 else int(r.seed) for r in reqs]
        size = self.args.size
        started = time.time()
        t0 = time.perf_counter()
        with torch.inference_mode():
            images = self.pipe(
                prompt=[r.prompt for r in reqs],
                num_inference_steps=steps,
                guidance_scale=0.0,
                height=size,
                width=size,
                generator=[seed_generator(self.runtime.device, s) for s in seeds],
            ).images
        model_s = time.perf_counter() - t0
        finished = time.time()
        out = []
        for r, seed, img in zip(reqs, seeds, images):
            buf = io.BytesIO()
            img.save(buf, format="PNG", optimize=False)
            out.append(
                CoverResult(
                    png=buf.getvalue(),
                    width=img.width,
                    height=img.height,
                    seed=seed,
                    steps=steps,
                    prompt=r.prompt,
                    model=self.args.model,
                    started_at=started,
                    finished_at=finished,
                    model_s=model_s,
                )
            )
        return out


@serve.deployment(name="Cover", max_ongoing_requests=16)
class CoverDeployment:
    """Concurrent covers are batched into one pipeline call (@serve.batch)."""

    def __init__(self, args: CoverArgs | dict):
        args = CoverArgs.model_validate(args)
        self.engine = CoverEngine(args)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cover")
        self._idle = IdleTrimmer()
        self.paint.set_max_batch_size(args.max_batch_size)
        self.paint.set_batch_wait_timeout_s(args.batch_wait_timeout_s)

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.01)
    async def paint(self, reqs: list[CoverRequest]) -> list[CoverResult]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.engine.generate_batch, reqs)

    async def generate(self, req: CoverRequest) -> CoverResult:
        with self._idle.request():
            return await self.paint(req)

    async def ready(self) -> str:
        return f"{self.engine.args.model} on {self.engine.runtime.device}"
