"""ACE-Step 1.5 composer: the engine (usable without Ray) and its Serve deployment."""

from __future__ import annotations

import logging
import threading
import time
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ray import serve

from deployments.audio_codec import CODECS, AudioFormat
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

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger("ray.serve")

INSTRUMENTAL_LYRICS = "[instrumental]"
TURBO_STEPS, BASE_STEPS = 8, 50
BASE_GUIDANCE = 7.0


def configure_vae(vae: Any, args: MusicArgs) -> None:
    """Set up ACE-Step's Oobleck VAE as `args` say: the in-place decoder and time-axis tiling.

    Tiling is diffusers' own (`AutoencoderOobleck._tiled_decode`): windows of `vae_tile_frames`
    latent frames, each with `vae_tile_overlap_frames` of context per side that is decoded and
    cropped away, so every output sample sees the same inputs as in one untiled call. The decoder
    swap and tiling compose: each tile runs through whichever decoder the VAE has.
    """
    if args.fast_vae_decoder:
        from deployments.oobleck import speed_up_decoder

        speed_up_decoder(vae)
    if not args.vae_tiling:
        vae.use_tiling = False
        return
    if not (hasattr(vae, "_tiled_decode") and hasattr(vae, "tile_latent_min_length")):
        raise RuntimeError(
            f"{type(vae).__name__} from this diffusers has no time-axis decode tiling (diffusers 0.42's "
            "AutoencoderOobleck has it): set vae_tiling false to decode untiled"
        )
    vae.use_tiling = True
    vae.tile_latent_min_length = int(args.vae_tile_frames)
    vae.tile_latent_overlap = int(args.vae_tile_overlap_frames)


@dataclass
class RenderedSong:
    """A rendered song before encoding: what the render thread hands the encode thread."""

    audio: np.ndarray  # (channels, samples) float32, trimmed to the requested length
    audio_format: AudioFormat
    sample_rate: int
    seed: int
    steps: int
    guidance_scale: float
    model: str
    notes: list[str] = field(default_factory=list)
    started_at: float = 0.0
    model_s: float = 0.0


@runtime_checkable
class StagedMusicProtocol(MusicProtocol, Protocol):
    """A music engine that renders and encodes separately, so its deployment encodes one song on
    another thread while the next one renders. `generate` is still `encode(render(...))`."""

    def render(
        self, req: MusicRequest, progress: ProgressFn | None = None, cancel: threading.Event | None = None
    ) -> RenderedSong: ...

    def encode(self, song: RenderedSong) -> MusicResult: ...


class MusicEngine(TorchEngine):
    """Loads the pipeline once in __init__ (never lazily), warms it, and renders encoded songs."""

    args: MusicArgs

    def load(self) -> None:
        from diffusers import AceStepPipeline

        from deployments.runtime import load_diffusers_pipeline

        args = self.args
        self.pipe = pipe = load_diffusers_pipeline(AceStepPipeline, args, self.runtime, compile_attr="transformer")
        configure_vae(pipe.vae, args)
        self.sample_rate = int(pipe.sample_rate)
        self.is_turbo = bool(pipe.is_turbo)
        self.default_steps = args.default_steps or (TURBO_STEPS if self.is_turbo else BASE_STEPS)
        self.default_guidance = (
            args.default_guidance_scale
            if args.default_guidance_scale is not None
            else (1.0 if self.is_turbo else BASE_GUIDANCE)
        )

    def warm_up(self) -> None:
        """One step at a realistic length (`warmup_duration_s`): shapes, tiles and pools of a real song."""
        self.generate(MusicRequest(tags="warm up", duration_s=float(self.args.warmup_duration_s), steps=1, seed=0))

    def generate(
        self,
        req: MusicRequest,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> MusicResult:
        """Render and encode on the calling thread (MusicDeployment encodes on its own threads)."""
        return self.encode(self.render(req, progress, cancel))

    def render(
        self,
        req: MusicRequest,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> RenderedSong:
        """The diffusion steps and the VAE decode: everything that runs on the accelerator."""
        import torch

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
        return RenderedSong(
            audio=audio,
            audio_format=req.audio_format,
            sample_rate=self.sample_rate,
            seed=seed,
            steps=steps,
            guidance_scale=guidance,
            model=self.args.model,
            notes=notes,
            started_at=started,
            model_s=time.perf_counter() - t0,
        )

    def encode(self, song: RenderedSong) -> MusicResult:
        """CPU only (no torch): safe on a thread beside the next song's render."""
        from deployments.audio_codec import encode

        t0 = time.perf_counter()
        data = encode(song.audio, song.sample_rate, song.audio_format)
        encode_s = time.perf_counter() - t0
        codec = CODECS[song.audio_format]
        channels, samples = (int(n) for n in song.audio.shape)
        return MusicResult(
            audio=data,
            audio_format=song.audio_format,
            extension=codec.extension,
            content_type=codec.content_type,
            sample_rate=song.sample_rate,
            channels=channels,
            num_samples=samples,
            duration_s=samples / song.sample_rate,
            seed=song.seed,
            steps=song.steps,
            guidance_scale=song.guidance_scale,
            model=song.model,
            notes=song.notes,
            started_at=song.started_at,
            finished_at=time.time(),
            model_s=song.model_s,
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
    noticing cancellations while a song is in flight. Encoding runs on separate threads
    (`encode_threads`): once a song's last step and decode are done, the render thread takes the
    next song while this one encodes. An engine without `render`/`encode` (a plain MusicProtocol)
    renders and encodes on the render thread. `engine_cls` swaps the engine (tests: a fake).
    """

    def __init__(self, args: MusicArgs | dict, engine_cls: type[MusicProtocol] = MusicEngine):
        args = MusicArgs.model_validate(args)
        self.engine = engine_cls(args)
        self._worker = Worker("music")
        self._encoder = Worker("music-encode", threads=args.encode_threads)  # threads start on first use

    async def generate_stream(self, req: MusicRequest, request_id: str | None = None):
        """Yields ("progress", (step, total)) after every diffusion step, then ("result", MusicResult).

        Called with `handle.options(stream=True)`. When the caller cancels (a cancelled job, a
        dropped client), Serve cancels this generator: the render stops at its next step and the
        replica is free for the next song. `request_id` (the song's id) is accepted for callers;
        cancelling needs no id, since closing the stream is the cancel.
        """
        # aclosing: when Serve closes this generator, the render's stream closes at once (not when
        # garbage-collected), which sets its cancel event.
        with self._worker.request():  # songs waiting for the render thread (or an encoder) count too
            if not isinstance(self.engine, StagedMusicProtocol):
                async with aclosing(self._worker.stream(self.engine.generate, req)) as events:
                    async for event in events:
                        yield event
                return
            rendered: Any = None
            async with aclosing(self._worker.stream(self.engine.render, req)) as events:
                async for kind, payload in events:
                    if kind == "result":
                        rendered = payload
                    else:
                        yield kind, payload
            # The render thread is free from here on. A cancel while encoding drops the result;
            # the encode itself (seconds at most) finishes on its thread.
            yield "result", await self._encoder.call(self.engine.encode, rendered)

    async def ready(self) -> str:
        return self.engine.ready()

    async def check_health(self) -> None:
        self._worker.check_health()
        self._encoder.check_health()
