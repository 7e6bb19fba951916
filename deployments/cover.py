"""SDXL-Turbo cover painter: the engine (usable without Ray) and its batched Serve deployment."""

from __future__ import annotations

import io
import time
from pathlib import Path

from ray import serve

from deployments.config import CoverArgs
from deployments.protocol import (  # noqa: F401  (the request/result types are imported from here too)
    MAX_SEED,
    CoverProtocol,
    CoverRequest,
    CoverResult,
    TorchEngine,
    resolve_seed,
)
from deployments.serving import Batcher, Worker

NEGATIVE_HINT = "text, letters, watermark, signature, blurry"


def cover_prompt(tags: str, title: str | None = None) -> str:
    """Album-art prompt from the song's tags; short because CLIP reads at most 77 tokens."""
    subject = f'"{title}", ' if title else ""
    return f"album cover art, {subject}{tags}, vibrant, detailed, artistic, no text"[:300]


class CoverEngine(TorchEngine):
    """Square album covers from text, batched: one pipeline call paints every cover in a batch."""

    args: CoverArgs
    half = "float16"  # SDXL's VAE overflows in bf16; fp16 is what sdxl-turbo ships (its fp16 weight variant).

    def load(self) -> None:
        import torch
        from diffusers import StableDiffusionXLPipeline

        from deployments.runtime import load_diffusers_pipeline

        args = self.args
        hub_fp16 = self.runtime.dtype == torch.float16 and not Path(args.model).exists()
        self.pipe = load_diffusers_pipeline(
            StableDiffusionXLPipeline, args, self.runtime, compile_attr="unet", add_watermarker=False,
            **({"variant": "fp16"} if hub_fp16 else {}),
        )
        if args.channels_last:
            for name in ("unet", "vae"):
                getattr(self.pipe, name).to(memory_format=torch.channels_last)

    def warm_up(self) -> None:
        self.generate_batch([CoverRequest(prompt="warm up", seed=0)])

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

        seeds = [resolve_seed(r.seed) for r in reqs]
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
    """Concurrent covers are batched into one pipeline call (a Batcher).

    `engine_cls` swaps the engine (tests: a fake)."""

    def __init__(self, args: CoverArgs | dict, engine_cls: type[CoverProtocol] = CoverEngine):
        args = CoverArgs.model_validate(args)
        self.engine = engine_cls(args)
        self._worker = Worker("cover")
        self._batcher = Batcher(self.paint, args.max_batch_size, args.batch_wait_timeout_s)

    async def paint(self, reqs: list[CoverRequest]) -> list[CoverResult]:
        return await self._worker.call(self.engine.generate_batch, reqs)

    async def generate(self, req: CoverRequest) -> CoverResult:
        with self._worker.request():
            return await self._batcher.submit(req)

    async def ready(self) -> str:
        return self.engine.ready()
