"""ACE-Step 1.5 composer: the engine (usable without Ray) and its Serve deployment.

One request renders `takes` songs in one pipeline batch (take k from seed take_seed(seed, k)), as
text2music or as an edit of a source file: cover, repaint, extend, and on base (non-turbo)
checkpoints extract, lego and complete. How long an edit's output is: the source's length
(cover, repaint, extract, lego, complete; the pipeline renders as many latent frames as the
source has, whatever `duration_s` says) or the source's plus `extend_s` (extend); `duration_s` is
only text2music's, and an edit whose `duration_s` differs from its output's length says so in
its notes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from ray import serve

from deployments.audio_codec import CODECS, MAX_SOURCE_S, AudioFormat, load_source, probe
from deployments.config import MusicArgs
from deployments.protocol import (  # noqa: F401  (the request/result types are imported from here too)
    BASE_ONLY_TASKS,
    EDIT_TASKS,
    MAX_SEED,
    MAX_TAKES,
    TRACK_NAMES,
    EngineError,
    MusicCapabilities,
    MusicProtocol,
    MusicRequest,
    MusicResult,
    ProgressFn,
    SongCancelled,
    TorchEngine,
    resolve_seed,
    take_seed,
)
from deployments.serving import Worker

logger = logging.getLogger("ray.serve")

INSTRUMENTAL_LYRICS = "[instrumental]"
TURBO_STEPS, BASE_STEPS = 8, 50
BASE_GUIDANCE = 7.0
UNKNOWN_LANGUAGE = "unknown"  # ACE-Step's vocal_language when none is given: the model decides

# Repaint and extend keep the source's samples outside the window bit for bit; inside it, at each
# edge with kept audio beyond it, the new audio fades in over this long (equal power: cos/sin), so
# the join has no click. At extend's edge the "kept audio beyond" is the silence it was padded with.
CROSSFADE_S = 0.03
# The repainted part is re-levelled to the source (see `match_level`) when at least this much of
# the source is kept to measure on, by at most this much either way.
LEVEL_CONTEXT_S = 0.25
MAX_LEVEL_GAIN_DB = 40.0
# Why a turbo checkpoint refuses extract / lego / complete ("task 'extract' " + this).
TURBO_REFUSAL = "needs a base (non-turbo) ACE-Step checkpoint; this replica runs a turbo one"
# Samples this far under full scale count as silence when measuring a level.
SILENT_RMS = 1e-5


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


# -- splicing repaint / extend output onto the source (numpy only) --


def splice(generated: np.ndarray, source: np.ndarray, start: int, end: int, crossfade: int) -> np.ndarray:
    """`source` with samples [start, end) taken from `generated`: (channels, samples) float32 each.

    Outside [start, end) the result IS the source's samples (copied, bit-identical). Inside, at
    each edge that has source audio beyond it (start > 0, end < length), an equal-power crossfade
    of `crossfade` samples (at most half the window) runs from the source into the new audio, so
    every faded sample lies inside the window too.
    """
    if generated.shape != source.shape:
        raise ValueError(f"generated {generated.shape} and source {source.shape} differ")
    length = source.shape[1]
    if not 0 <= start < end <= length:
        raise ValueError(f"window [{start}, {end}) is not inside 0..{length}")
    out = source.astype(np.float32, copy=True)
    out[:, start:end] = generated[:, start:end]
    xf = min(int(crossfade), (end - start) // 2)
    if xf > 0:
        t = (np.arange(xf, dtype=np.float64) + 0.5) / xf
        rise, fall = np.sin(t * np.pi / 2), np.cos(t * np.pi / 2)  # rise^2 + fall^2 == 1
        if start > 0:
            s = slice(start, start + xf)
            out[:, s] = (source[:, s] * fall + generated[:, s] * rise).astype(np.float32)
        if end < length:
            s = slice(end - xf, end)
            out[:, s] = (source[:, s] * rise + generated[:, s] * fall).astype(np.float32)
    return out


def kept_mask(length: int, start: int, end: int) -> np.ndarray:
    """True on the samples a repaint window [start, end) keeps from the source."""
    mask = np.ones(length, dtype=bool)
    mask[start:end] = False
    return mask


def match_level(generated: np.ndarray, source: np.ndarray, start: int, end: int, sample_rate: int) -> float:
    """The gain that puts the repainted window of `generated` at the source's level.

    The pipeline peak-normalizes each whole output to -1 dBFS, so a repainted window comes out at
    the level of that normalization, not the source's: a quiet source jumps up at the window and a
    loud one drops. Outside the window the output is the model's re-rendering of the kept source
    (the same gain applies to it), so the RMS of the source over the kept samples, divided by the
    RMS of the output over the same samples, is the gain that undoes the normalization. Returns 1.0
    (no change) when fewer than LEVEL_CONTEXT_S of source are kept or either part is silent; the
    gain is clamped to +-MAX_LEVEL_GAIN_DB and lowered so the window does not clip.
    """
    keep = kept_mask(source.shape[1], start, end)
    if keep.sum() < LEVEL_CONTEXT_S * sample_rate:
        return 1.0
    src_rms = float(np.sqrt(np.mean(np.square(source[:, keep], dtype=np.float64))))
    gen_rms = float(np.sqrt(np.mean(np.square(generated[:, keep], dtype=np.float64))))
    if src_rms < SILENT_RMS or gen_rms < SILENT_RMS:
        return 1.0
    limit = 10.0 ** (MAX_LEVEL_GAIN_DB / 20.0)
    gain = min(max(src_rms / gen_rms, 1.0 / limit), limit)
    peak = float(np.abs(generated[:, start:end]).max(initial=0.0))
    if peak > 0.0 and gain * peak > 1.0:
        gain = 1.0 / peak
    return gain


# -- the engine --


@dataclass
class RenderedSong:
    """A rendered take before encoding: what the render thread hands the encode thread."""

    audio: np.ndarray  # (channels, samples) float32, trimmed to the output's length
    audio_format: AudioFormat
    sample_rate: int
    seed: int
    steps: int
    guidance_scale: float
    model: str
    notes: list[str] = field(default_factory=list)
    started_at: float = 0.0
    model_s: float = 0.0  # the whole batch's render time (every take of a request shares it)
    take: int = 0
    task: str = "text2music"


@runtime_checkable
class StagedMusicProtocol(MusicProtocol, Protocol):
    """A music engine that renders and encodes separately, so its deployment encodes one song on
    another thread while the next one renders. `generate` is `[encode(s) for s in render(...)]`."""

    def render(
        self, req: MusicRequest, progress: ProgressFn | None = None, cancel: threading.Event | None = None
    ) -> list[RenderedSong]: ...

    def encode(self, song: RenderedSong) -> MusicResult: ...


@dataclass
class _Plan:
    """What one request asks of the pipeline, worked out before the render."""

    task: str
    out_samples: int  # the output's length
    frames: int  # latent frames the pipeline renders (>= out_samples / samples per frame)
    audio_duration: float  # the pipeline's audio_duration (the prompt's "duration" metadata)
    pipe_kwargs: dict[str, Any] = field(default_factory=dict)
    source: np.ndarray | None = None  # (2, out_samples) what the output is spliced onto (extend: padded)
    src_audio: np.ndarray | None = None  # (2, frames * samples per frame) what the pipeline encodes
    window: tuple[int, int] | None = None  # repaint / extend: samples [start, end) written anew
    notes: list[str] = field(default_factory=list)


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
        self.frame = int(round(self.sample_rate / float(pipe.latents_per_second)))  # samples per latent frame
        self.is_turbo = bool(pipe.is_turbo)
        self.default_steps = args.default_steps or (TURBO_STEPS if self.is_turbo else BASE_STEPS)
        self.default_guidance = (
            args.default_guidance_scale
            if args.default_guidance_scale is not None
            else (1.0 if self.is_turbo else BASE_GUIDANCE)
        )
        self._tasks, self._missing = self._supported_tasks()

    def _supported_tasks(self) -> tuple[list[str], dict[str, str]]:
        """The tasks this checkpoint can run, and why each other one cannot: a phrase that follows the
        task's name ("task 'cover' needs ..."), the engine's refusal and MusicCapabilities.unavailable."""
        pipe, missing = self.pipe, {}
        latent_dim = int(getattr(pipe.vae.config, "encoder_hidden_size", 0)) // 2  # mean + scale halves
        want_dim = int(pipe.transformer.config.audio_acoustic_hidden_dim)
        for task in EDIT_TASKS:
            if task in BASE_ONLY_TASKS and self.is_turbo:
                missing[task] = TURBO_REFUSAL
            elif latent_dim != want_dim:
                missing[task] = (f"cannot run here: this checkpoint's VAE encodes {latent_dim}-channel latents where "
                                 f"its transformer takes {want_dim}, so it cannot read source audio")
            elif task == "cover" and (pipe.audio_tokenizer is None or pipe.audio_token_detokenizer is None):
                missing[task] = "needs the checkpoint's audio tokenizer and detokenizer, which this one lacks"
        return ["text2music", *(t for t in EDIT_TASKS if t not in missing)], missing

    def capabilities(self) -> MusicCapabilities:
        stems = any(t in self._tasks for t in BASE_ONLY_TASKS)
        return MusicCapabilities(model=self.args.model_name, is_turbo=self.is_turbo, sample_rate=self.sample_rate,
                                 tasks=list(self._tasks), track_names=list(TRACK_NAMES) if stems else [],
                                 max_takes=MAX_TAKES, unavailable=dict(self._missing))

    def warm_up(self) -> None:
        """One step at a realistic length (`warmup_duration_s`): shapes, tiles and pools of a real song."""
        self.generate(MusicRequest(tags="warm up", duration_s=float(self.args.warmup_duration_s), steps=1, seed=0))

    def generate(
        self,
        req: MusicRequest,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> list[MusicResult]:
        """Render and encode on the calling thread, one result per take in take order
        (MusicDeployment encodes on its own threads)."""
        return [self.encode(song) for song in self.render(req, progress, cancel)]

    def render(
        self,
        req: MusicRequest,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> list[RenderedSong]:
        """The diffusion steps and the VAE decode of every take (one pipeline batch): everything
        that runs on the accelerator, plus the source's decode and the repaint splice."""
        import torch

        if req.audio_format not in CODECS:
            raise ValueError(f"audio_format must be one of {sorted(CODECS)}, got {req.audio_format!r}")
        takes = int(req.takes)
        if not 1 <= takes <= MAX_TAKES:
            raise ValueError(f"takes must be 1 to {MAX_TAKES}, got {req.takes}")
        if cancel is not None and cancel.is_set():
            raise SongCancelled("cancelled before start")
        notes: list[str] = []
        seed = resolve_seed(req.seed)
        seeds = [take_seed(seed, k) for k in range(takes)]
        steps = req.steps or self.default_steps
        guidance = self.default_guidance if req.guidance_scale is None else float(req.guidance_scale)
        if self.is_turbo and guidance > 1.0:
            notes.append(f"guidance_scale {guidance:g} ignored: turbo checkpoints have guidance distilled in")
            guidance = 1.0
        lyrics = INSTRUMENTAL_LYRICS if req.instrumental or not req.lyrics.strip() else req.lyrics
        controls = self._controls(req, notes)
        started = time.time()
        t0 = time.perf_counter()
        plan = self._plan(req)  # decodes and resamples the source, if any: on the render thread, timed with it
        notes += plan.notes

        def on_step_end(pipe, step_idx, timestep, callback_kwargs):
            if progress is not None:
                progress(step_idx + 1, steps)
            if cancel is not None and cancel.is_set():
                raise SongCancelled(f"cancelled after step {step_idx + 1} of {steps}")
            return callback_kwargs

        try:
            out = self._render(req, plan, lyrics, controls, steps, guidance, seeds, on_step_end)
        except torch.OutOfMemoryError:
            if self.runtime.device.type == "cuda":
                torch.cuda.empty_cache()  # leave the replica able to serve the next song
            raise EngineError(
                f"out of GPU memory rendering {takes} take(s) of {plan.out_samples / self.sample_rate:g} s at "
                f"{steps} steps; try fewer takes, a shorter audio_duration or fewer infer_step"
            ) from None
        if len(out.audios) != takes:
            raise EngineError(f"the pipeline returned {len(out.audios)} take(s) for {takes}")
        # The pipeline renders whole latent frames (ceil); trim to exactly the output's length.
        finished = [self._finish(np.asarray(a, dtype=np.float32)[:, : plan.out_samples], plan) for a in out.audios]
        model_s = time.perf_counter() - t0
        return [
            RenderedSong(
                audio=np.ascontiguousarray(audio, dtype=np.float32),
                audio_format=req.audio_format,
                sample_rate=self.sample_rate,
                seed=seeds[k],
                steps=steps,
                guidance_scale=guidance,
                model=self.args.model_name,
                notes=[*notes, *take_notes],
                started_at=started,
                model_s=model_s,
                take=k,
                task=plan.task,
            )
            for k, (audio, take_notes) in enumerate(finished)
        ]

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
            notes=list(song.notes),
            started_at=song.started_at,
            finished_at=time.time(),
            model_s=song.model_s,
            encode_s=encode_s,
            take=song.take,
            task=song.task,
        )

    # -- the parts of a render --

    @staticmethod
    def _controls(req: MusicRequest, notes: list[str]) -> dict[str, Any]:
        """bpm / keyscale / timesignature / vocal_language for the pipeline: None (or "unknown" for
        the language) lets the model decide. Values are the ingress's to validate; the only change
        made here is reading a time signature written as "3/4" as ACE-Step's beats per bar ("3")."""
        keyscale = (req.keyscale or "").strip() or None
        timesig = (req.timesignature or "").strip() or None
        if timesig is not None and "/" in timesig:
            beats = timesig.split("/", 1)[0].strip()
            notes.append(f"timesignature {timesig!r} read as {beats!r} (beats per bar)")
            timesig = beats or None
        return {
            "bpm": None if req.bpm is None else int(req.bpm),
            "keyscale": keyscale,
            "timesignature": timesig,
            "vocal_language": (req.vocal_language or "").strip() or UNKNOWN_LANGUAGE,
        }

    def _plan(self, req: MusicRequest) -> _Plan:
        task, sr, frame = req.task, self.sample_rate, self.frame
        if task == "text2music":
            # The pipeline's own latent length (ceil of seconds x frames per second), matched by the
            # noise passed in; the output is trimmed to the requested number of samples.
            frames = math.ceil(float(req.duration_s) * float(self.pipe.latents_per_second))
            return _Plan(task, int(round(req.duration_s * sr)), frames, float(req.duration_s))
        if task not in EDIT_TASKS:
            raise ValueError(f"task must be text2music or one of {', '.join(EDIT_TASKS)}, got {task!r}")
        if task in self._missing:
            raise ValueError(f"task {task!r} {self._missing[task]}")
        if not req.source_audio:
            raise ValueError(f"task {task!r} needs source_audio (a wav, flac, mp3 or ogg file)")
        if task == "extend":  # refused from the header before the decode, when the total is too long
            self._check_extend(probe(req.source_audio).duration_s, float(req.extend_s))
        source = load_source(req.source_audio, sr, max_seconds=MAX_SOURCE_S)
        n = source.shape[1]
        plan = _Plan(task, n, 0, 0.0, source=source)
        kw = plan.pipe_kwargs
        kw["task_type"] = "repaint" if task == "extend" else task
        if task == "cover":
            strength = float(req.cover_strength)
            if not 0.0 <= strength <= 1.0:
                raise ValueError(f"cover_strength must be in [0, 1], got {req.cover_strength}")
            kw["audio_cover_strength"] = strength
        elif task == "repaint":
            plan.window = self._window(req.repaint_start_s, req.repaint_end_s, n, "repaint")
        elif task == "extend":
            extra = int(round(float(req.extend_s) * sr))
            self._check_extend(n / sr, extra / sr)
            plan.source = np.concatenate([source, np.zeros((source.shape[0], extra), np.float32)], axis=1)
            plan.out_samples = n + extra
            plan.window = (n, n + extra)
        elif task in ("extract", "lego"):
            kw["track_name"] = req.track_name
            if task == "lego" and (req.repaint_start_s is not None or req.repaint_end_s is not None):
                start, end = self._window(req.repaint_start_s, req.repaint_end_s, n, "lego")
                kw.update(self._latent_window(start, end))
        elif task == "complete":
            kw["complete_track_classes"] = list(req.complete_tracks or []) or None
        if plan.window is not None:
            kw.update(self._latent_window(*plan.window))
        # The VAE encodes whole latent frames (floor): pad the source with silence to a whole number
        # of frames, so the output covers all of it, and trim the output back to the source's length.
        plan.frames = -(-plan.out_samples // frame)
        padded = plan.source
        if padded.shape[1] < plan.frames * frame:
            padded = np.pad(padded, ((0, 0), (0, plan.frames * frame - padded.shape[1])))
        plan.src_audio = padded
        plan.audio_duration = plan.out_samples / sr
        if abs(float(req.duration_s) - plan.audio_duration) * sr > frame:
            plan.notes.append(f"duration_s {req.duration_s:g} ignored: {task} output is as long as the source"
                              f"{' plus extend_s' if task == 'extend' else ''} ({plan.audio_duration:.2f} s)")
        return plan

    @staticmethod
    def _check_extend(source_s: float, extend_s: float) -> None:
        if not extend_s > 0:
            raise ValueError(f"extend needs extend_s > 0, got {extend_s:g}")
        if source_s + extend_s > MAX_SOURCE_S + 1e-6:
            raise ValueError(f"extend: the {source_s:.1f} s source plus {extend_s:g} s is {source_s + extend_s:.1f} s, "
                             f"over the {MAX_SOURCE_S:g} s a song may last")

    def _window(self, start_s: float | None, end_s: float | None, n: int, task: str) -> tuple[int, int]:
        """A [start, end) window in samples of a source of n samples (None: its start / end)."""
        sr, length = self.sample_rate, n / self.sample_rate
        start = 0.0 if start_s is None else float(start_s)
        end = length if end_s is None else float(end_s)
        if not (0.0 <= start < end):
            raise ValueError(f"{task} window needs 0 <= repaint_start_s < repaint_end_s, got {start:g} to {end:g}")
        if end > length + 1e-3:
            raise ValueError(f"{task} window ends at {end:g} s, past the source's end ({length:.3f} s); "
                             "use task 'extend' to add audio after it")
        a, b = int(round(start * sr)), min(n, int(round(end * sr)))
        if b <= a:
            raise ValueError(f"{task} window {start:g} to {end:g} s holds no samples of the source")
        return a, b

    def _latent_window(self, start: int, end: int) -> dict[str, float]:
        """The pipeline's repainting_start/end for samples [start, end): the whole latent frames that
        cover it (the pipeline truncates seconds x frames per second; the +0.01 frame keeps a frame
        boundary from rounding down to the frame before)."""
        lps = float(self.pipe.latents_per_second)
        first, last = start // self.frame, -(-end // self.frame)
        return {"repainting_start": (first + 0.01) / lps, "repainting_end": (last + 0.01) / lps}

    def _finish(self, audio: np.ndarray, plan: _Plan) -> tuple[np.ndarray, list[str]]:
        """Repaint / extend: re-level the new part and splice it onto the source (see `splice`)."""
        if plan.window is None:
            return audio, []
        start, end = plan.window
        notes = []
        gain = match_level(audio, plan.source, start, end, self.sample_rate)
        if abs(20.0 * math.log10(gain)) >= 0.1:
            audio = audio.copy()
            audio[:, start:end] *= np.float32(gain)
            notes.append(f"{plan.task}: the new part's level matched to the source ({20.0 * math.log10(gain):+.1f} dB, "
                         "undoing the pipeline's -1 dBFS peak normalization)")
        return splice(audio, plan.source, start, end, int(round(CROSSFADE_S * self.sample_rate))), notes

    def _render(self, req: MusicRequest, plan: _Plan, lyrics: str, controls: dict[str, Any], steps: int,
                guidance: float, seeds: list[int], on_step_end):
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        from deployments.faults import maybe_oom
        from deployments.runtime import seed_generator

        maybe_oom("music", req.tags)
        pipe, device = self.pipe, self.runtime.device
        takes = len(seeds)
        generators = [seed_generator(device, s) for s in seeds]
        exec_device = pipe._execution_device
        # The initial noise, made as the pipeline makes it (randn_tensor, one generator per take), at
        # the latent length the pipeline's context has: the pipeline's own prepare_latents re-derives
        # that length from seconds (ceil of frames / 25 x 25) and gets one frame too many for about
        # one length in sixteen (2.2 s, 4.4 s, ...), which fails the render.
        latents = randn_tensor((takes, plan.frames, pipe.transformer.config.audio_acoustic_hidden_dim),
                               generator=generators, device=exec_device, dtype=pipe.transformer.dtype)
        kwargs: dict[str, Any] = dict(
            prompt=req.tags if takes == 1 else [req.tags] * takes,
            lyrics=lyrics if takes == 1 else [lyrics] * takes,
            audio_duration=plan.audio_duration,
            num_inference_steps=steps,
            guidance_scale=guidance,
            shift=self.args.shift,
            generator=generators,
            latents=latents,
            output_type="np",
            callback_on_step_end=on_step_end,
            **controls,
            **plan.pipe_kwargs,
        )
        if plan.src_audio is not None:
            kwargs["src_audio"] = torch.from_numpy(plan.src_audio)
        # The pipeline samples the source's VAE latents from torch's global generator: seed it from
        # the request (take 0's seed) so an edit reproduces, without touching anyone else's stream.
        cuda = [device] if device.type == "cuda" else []
        with torch.inference_mode(), torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seeds[0])
            return pipe(**kwargs)


@serve.deployment(name="Music", max_ongoing_requests=4)
class MusicDeployment:
    """One request renders at a time per replica (the pipeline is not re-entrant); others wait here.

    The render runs on a worker thread so the replica's event loop keeps streaming progress and
    noticing cancellations while a song is in flight. Encoding runs on separate threads
    (`encode_threads`): once a request's last step and decode are done, the render thread takes the
    next request while its takes encode. An engine without `render`/`encode` (a plain MusicProtocol)
    renders and encodes on the render thread. `engine_cls` swaps the engine (tests: a fake).
    """

    def __init__(self, args: MusicArgs | dict, engine_cls: type[MusicProtocol] = MusicEngine):
        args = MusicArgs.model_validate(args)
        self.engine = engine_cls(args)
        self._worker = Worker("music")
        self._encoder = Worker("music-encode", threads=args.encode_threads)  # threads start on first use

    async def generate_stream(self, req: MusicRequest, request_id: str | None = None):
        """Yields ("progress", (step, total)) after every diffusion step, then ("result", MusicResult)
        once per take, in take order (`result.take` is 0, 1, ...).

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
                    async for kind, payload in events:
                        if kind != "result":
                            yield kind, payload
                        else:  # a list of takes, or one MusicResult from an engine that predates takes
                            for result in payload if isinstance(payload, list) else [payload]:
                                yield "result", result
                return
            rendered: Any = None
            async with aclosing(self._worker.stream(self.engine.render, req)) as events:
                async for kind, payload in events:
                    if kind == "result":
                        rendered = payload
                    else:
                        yield kind, payload
            # The render thread is free from here on. Every take is queued on the encoder pool at
            # once (encode_threads of them side by side) and handed back in take order. A cancel
            # while encoding drops the results; encodes already running (seconds at most) finish on
            # their threads, queued ones never start.
            songs = rendered if isinstance(rendered, list) else [rendered]
            encodes = [asyncio.ensure_future(self._encoder.call(self.engine.encode, s)) for s in songs]
            del songs, rendered
            try:
                for encoding in encodes:
                    yield "result", await encoding
            finally:
                for encoding in encodes:
                    if not encoding.done():
                        encoding.cancel()
                    elif not encoding.cancelled():
                        encoding.exception()  # retrieved: a later take's error is not logged as unhandled

    async def capabilities(self) -> MusicCapabilities:
        """What this replica's model can do (the ingress checks edits against it). An engine without
        `capabilities()` is taken for a turbo ACE-Step at 48 kHz that runs every non-base task."""
        method = getattr(self.engine, "capabilities", None)
        if callable(method):
            return method()
        return MusicCapabilities(model=str(getattr(self.engine.args, "model", "")), is_turbo=True, sample_rate=48000,
                                 tasks=["text2music", *(t for t in EDIT_TASKS if t not in BASE_ONLY_TASKS)],
                                 track_names=[], max_takes=MAX_TAKES,
                                 unavailable={t: TURBO_REFUSAL for t in EDIT_TASKS if t in BASE_ONLY_TASKS})

    async def ready(self) -> str:
        return self.engine.ready()

    async def check_health(self) -> None:
        self._worker.check_health()
        self._encoder.check_health()
