"""The cover painter: the engine (usable without Ray) and its batched Serve deployment.

The model is any diffusers text-to-image pipeline, loaded with AutoPipelineForText2Image (the class
comes from the checkpoint's model_index.json): SDXL-Turbo by default (non-commercial licence,
sai-nc-community; README, Production, says how to switch to another few-step model).
"""

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
    # fp16 on CUDA: sdxl-turbo ships an fp16 weight variant (half the download). SDXL's original VAE
    # overflows in fp16 (inf/NaN activations, black images), so diffusers upcasts it to fp32 for every
    # decode (its config's force_upcast); the fp16-fix VAE (args.vae: madebyollin/sdxl-vae-fp16-fix)
    # decodes in fp16 and skips that upcast. (bf16 has fp32's range and does not overflow.)
    half = "float16"

    def load(self) -> None:
        import torch
        from diffusers import AutoPipelineForText2Image

        from deployments.runtime import load_diffusers_pipeline

        args = self.args
        extra = {"add_watermarker": False}  # SDXL's invisible watermark (other pipelines ignore the keyword)
        if args.vae:
            extra["vae"] = self._load_vae()

        def load(**more):
            return load_diffusers_pipeline(
                AutoPipelineForText2Image, args, self.runtime, compile_attr=("unet", "transformer"), **extra, **more
            )

        if self.runtime.dtype == torch.float16 and not Path(args.model).exists():
            try:
                self.pipe = load(variant="fp16")
            except ValueError as exc:  # a checkpoint with no fp16 variant at all: its plain files, as weights.py
                if "variant" not in str(exc):
                    raise
                self.pipe = load()
        else:
            self.pipe = load()
        if args.channels_last:
            for name in ("unet", "vae"):  # the convolutional networks; a DiT pipeline has no unet
                module = getattr(self.pipe, name, None)
                if module is not None:
                    module.to(memory_format=torch.channels_last)

    def _load_vae(self):
        """args.vae as an AutoencoderKL in the engine's dtype, told not to upcast itself to fp32."""
        from diffusers import AutoencoderKL

        from deployments.runtime import from_pretrained

        vae_args = self.args.model_copy(update={"model": self.args.vae})
        vae = from_pretrained(AutoencoderKL.from_pretrained, vae_args, dtype=self.runtime.dtype)
        vae.register_to_config(force_upcast=False)  # the fp16-fix VAE's config says so too; make it true
        return vae

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
                    model=self.args.model_name,
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
