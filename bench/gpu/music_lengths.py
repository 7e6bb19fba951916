"""Music at several song lengths (30/180/600 s full size), tiled vs untiled VAE decode: render and
decode seconds and peak memory, through one `deployments.music.MusicEngine`.

The engine loads once with `vae_tiling` on (`configure_vae` sets the tile sizes and the in-place
decoder); the untiled runs switch `vae.use_tiling` off, the state `configure_vae` leaves for
`vae_tiling: false`. An untiled long song may run out of GPU memory or past 2^31 elements in one
tensor: that error is the result of that case (recorded, not raised), and the next case runs.
"""

from __future__ import annotations

from typing import Any

from bench.gpu.measure import Gpu, free_memory, reset_rss_peak, timed, timed_calls
from bench.gpu.music import music_args, music_request
from bench.gpu.settings import MUSIC_SPECS, Runtime, Workload
from bench.gpu.variants import variants

FRAMES_PER_S = 25  # latent frames per second of 48 kHz audio (1920 samples each)


def set_tiling(engine, on: bool) -> None:
    engine.args = engine.args.model_copy(update={"vae_tiling": on})
    engine.pipe.vae.use_tiling = on


def _case(engine, gpu: Gpu, wl: Workload, seconds: float, tiled: bool) -> dict[str, Any]:
    set_tiling(engine, tiled)
    decodes: list[float] = []
    free_memory()
    gpu.reset_peak()
    before = gpu.snapshot()
    rss_reset = reset_rss_peak()
    try:
        with timed_calls(engine.pipe.vae, "decode", gpu, decodes):
            res, wall = timed(gpu, lambda: engine.render(music_request(wl, duration_s=seconds))[0])
    except Exception as exc:  # noqa: BLE001 - an untiled long song failing is a result
        from bench.gpu.measure import error_entry

        out = error_entry(exc)
        out.pop("traceback", None)
        out["memory"] = gpu.snapshot()
        free_memory()
        return out
    after = gpu.snapshot()
    decode_s = sum(decodes)
    peak = after.get("peak_allocated_bytes")
    rss_peak = after.get("rss_peak_bytes")
    return {
        "render_s": res.model_s, "wall_s": wall, "decode_s": decode_s, "diffusion_s": res.model_s - decode_s,
        "latent_frames": int(round(seconds * FRAMES_PER_S)), "audio_s": res.audio.shape[1] / res.sample_rate,
        "peak_bytes": peak, "peak_over_start_bytes": None if peak is None else peak - (before["allocated_bytes"] or 0),
        "rss_peak_over_start_bytes": (rss_peak - before["rss_bytes"]) if rss_reset and rss_peak and before.get(
            "rss_bytes") else None,
        "memory": after,
    }


def bench_music_lengths(path: str, rt: Runtime, wl: Workload, gpu: Gpu) -> dict[str, Any]:
    from deployments.music import MusicEngine

    vs, _ = variants("music", rt)
    base = next(v for v in vs if v.baseline)
    args = music_args(path, rt, base).model_copy(update={
        "vae_tiling": True, "vae_tile_frames": wl.vae_tile_frames, "vae_tile_overlap_frames": wl.vae_tile_overlap_frames})
    gpu.clear()
    engine, load_s = timed(gpu, lambda: MusicEngine(args))
    lengths: dict[str, Any] = {}
    try:
        shortest = min(wl.music_lengths_s)
        for tiled in (True, False):  # warm-up: kernels and pools of both decode paths, 1 step
            set_tiling(engine, tiled)
            engine.render(music_request(wl, duration_s=shortest, steps=1))
        for seconds in sorted(wl.music_lengths_s):
            print(f"[music_lengths] {seconds:g} s ...", flush=True)
            lengths[f"{seconds:g}"] = {"song_s": seconds, "tiled": _case(engine, gpu, wl, seconds, True),
                                       "untiled": _case(engine, gpu, wl, seconds, False)}
    finally:
        del engine
        free_memory()
    return {
        "model": MUSIC_SPECS[rt.music_variant], "dtype": base.dtype, "steps": wl.music_steps, "load_s": load_s,
        "tile_frames": wl.vae_tile_frames, "tile_overlap_frames": wl.vae_tile_overlap_frames,
        "peak_source": "torch.cuda.max_memory_allocated (reset before each case)" if rt.cuda
        else "no GPU: peak RSS over the RSS at the case's start (VmHWM reset by clear_refs)",
        "lengths": lengths,
        "note": "render_s = diffusion + VAE decode (engine.render's model_s); decode_s = the VAE decode calls, "
                "CUDA-synchronized; an untiled case that fails records its error",
    }
