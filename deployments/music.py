"""ACE-Step 1.5 composer: the engine (usable without Ray) and its Serve deployment."""

from __future__ import annotations

import logging
import threading
import time
from contextlib import aclosing

from ray import serve

from deployments.audio_codec import CODECS
from deployments.config import MusicArgs
from deployments.protocol import (  # noqa: F401  (the request/result types are imported from here too)
    MAX_SEED,
    EngineError,
    MusicProtocol,
    MusicRequest,
    MusicResult,
    ProgressFn,
    SongCancelled,
    TorchEngine,
    resolve_seed,
)
from deployments.serving import Worker

logger = logging.getLogger("ray.serve")

INSTRUMENTAL_LYRICS = "[instrumental]"
TURBO_STEPS, BASE_STEPS = 8, 50
BASE_GUIDANCE = 7.0


class MusicEngine(TorchEngine):
    """Loads the pipeline once in __init__ (never lazily), warms it, and renders encoded songs."""

    args: MusicArgs

    def load(self) -> None:
        from diffusers import AceStepPipeline

        from deployments.runtime import load_diffusers_pipeline

        args = self.args
        self.pipe = pipe = load_diffusers_pipeline(AceStepPipeline, args, self.runtime, compile_attr="transformer")
        if args.fast_vae_decoder:
            from deployments.oobleck import speed_up_decoder

            speed_up_decoder(pipe.vae)
        self.sample_rate = int(pipe.sample_rate)
        self.is_turbo = bool(pipe.is_turbo)
        self.default_steps = args.default_steps or (TURBO_STEPS if self.is_turbo else BASE_STEPS)
        self.default_guidance = (
            args.default_guidance_scale
            if args.default_guidance_scale is not None
            else (1.0 if self.is_turbo else BASE_GUIDANCE)
        )

    def warm_up(self) -> None:
        self.generate(MusicRequest(tags="warm up", duration_s=1.0, steps=1, seed=0))

    def generate(
        self,
        req: MusicRequest,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> MusicResult:
        import torch

        from deployments.audio_codec import encode

        if req.audio_format not in CODECS:
            raise ValueError(f"audio_format must be one of {sorted(CODECS)}, got {req.audio_format!r}")
        if cancel is not None and cancel.is_set():
            raise SongCancelled("cancelled before start")
        notes: list[str] = []
        seed = resolve_seed(req.seed)
        steps = req.steps or self.default_steps
        guidance = self.default_guidance if req.guidance_scale is None else float(req.guidance_scale)
        if self.is_turbo and guidance > 1.0:
            notes.append(f"guidance_scale {guidance:g} ignored: turbo checkpoints have guidance distilled in")
            guidance = 1.0
        lyrics = INSTRUMENTAL_LYRICS if req.instrumental or not req.lyrics.strip() else req.lyrics

        def on_step_end(pipe, step_idx, timestep, callback_kwargs):
            if progress is not None:
                progress(step_idx + 1, steps)
            if cancel is not None and cancel.is_set():
                raise SongCancelled(f"cancelled after step {step_idx + 1} of {steps}")
            return callback_kwargs

        started = time.time()
        t0 = time.perf_counter()
        try:
            out = self._render(req, lyrics, steps, guidance, seed, on_step_end)
        except torch.OutOfMemoryError:
            if self.runtime.device.type == "cuda":
                torch.cuda.empty_cache()  # leave the replica able to serve the next song
            raise EngineError(
                f"out of GPU memory rendering {req.duration_s:g} s at {steps} steps; "
                "try a shorter audio_duration or fewer infer_step"
            ) from None
        audio = out.audios[0]
        # The pipeline renders whole latent frames (ceil); trim to exactly the requested length.
        want = int(round(req.duration_s * self.sample_rate))
        audio = audio[:, :want]
        model_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        data = encode(audio, self.sample_rate, req.audio_format)
        encode_s = time.perf_counter() - t1
        codec = CODECS[req.audio_format]
        return MusicResult(
            audio=data,
            audio_format=req.audio_format,
            extension=codec.extension,
            content_type=codec.content_type,
            sample_rate=self.sample_rate,
            channels=int(audio.shape[0]),
            num_samples=int(audio.shape[1]),
            duration_s=audio.shape[1] / self.sample_rate,
            seed=seed,
            steps=steps,
            guidance_scale=guidance,
            model=self.args.model,
            notes=notes,
            started_at=started,
            finished_at=time.time(),
            model_s=model_s,
            encode_s=encode_s,
        )

    def _render(self, req: MusicRequest, lyrics: str, steps: int, guidance: float, seed: int, on_step_end):
        import torch

        from deployments.faults import maybe_oom
        from deployments.runtime import seed_generator

        maybe_oom("music", req.tags)
        with torch.inference_mode():
            return self.pipe(
                prompt=req.tags,
                lyrics=lyrics,
                audio_duration=float(req.duration_s),
                vocal_language=req.vocal_language,
                num_inference_steps=steps,
                guidance_scale=guidance,
                shift=self.args.shift,
                generator=seed_generator(self.runtime.device, seed),
                output_type="np",
                callback_on_step_end=on_step_end,
            )


@serve.deployment(name="Music", max_ongoing_requests=4)
class MusicDeployment:
    """One song renders at a time per replica (the pipeline is not re-entrant); others wait here.

    The render runs on a worker thread so the replica's event loop keeps streaming progress and
    noticing cancellations while a song is in flight. `engine_cls` swaps the engine (tests: a fake).
    """

    def __init__(self, args: MusicArgs | dict, engine_cls: type[MusicProtocol] = MusicEngine):
        self.engine = engine_cls(MusicArgs.model_validate(args))
        self._worker = Worker("music")

    async def generate_stream(self, req: MusicRequest, request_id: str | None = None):
        """Yields ("progress", (step, total)) after every diffusion step, then ("result", MusicResult).

        Called with `handle.options(stream=True)`. When the caller cancels (a cancelled job, a
        dropped client), Serve cancels this generator: the render stops at its next step and the
        replica is free for the next song. `request_id` (the song's id) is accepted for callers;
        cancelling needs no id, since closing the stream is the cancel.
        """
        with self._worker.request():  # songs waiting for the render thread count too
            # aclosing: when Serve closes this generator, the render's stream closes at once (not
            # when garbage-collected), which sets its cancel event.
            async with aclosing(self._worker.stream(self.engine.generate, req)) as events:
                async for event in events:
                    yield event

    async def ready(self) -> str:
        return self.engine.ready()

    async def check_health(self) -> None:
        self._worker.check_health()
