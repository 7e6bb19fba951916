"""Music: real-time factor of one song through `deployments.music.MusicEngine`, per engine option."""

from __future__ import annotations

from typing import Any

from bench.gpu.measure import Gpu, peak_of, stats_of, timed
from bench.gpu.settings import MUSIC_SPECS, SONG_LYRICS, SONG_TAGS, Runtime, Workload
from bench.gpu.variants import Variant, bench_variants, release


def music_request(wl: Workload, duration_s: float | None = None, steps: int | None = None):
    from deployments.music import MusicRequest

    return MusicRequest(tags=SONG_TAGS, lyrics=SONG_LYRICS, duration_s=duration_s or wl.song_s,
                        steps=steps or wl.music_steps, seed=0, audio_format="wav")


def music_args(path: str, rt: Runtime, v: Variant):
    from deployments.config import MusicArgs

    return MusicArgs(model=path, dtype=v.dtype, torch_compile=v.torch_compile, cpu_offload=v.cpu_offload,
                     **rt.engine_common(), **dict(v.engine))


def bench_music_variant(path: str, rt: Runtime, wl: Workload, gpu: Gpu, v: Variant) -> dict[str, Any]:
    from deployments.music import MusicEngine

    gpu.clear()
    engine, load_s = timed(gpu, lambda: MusicEngine(music_args(path, rt, v)))
    mem_load = gpu.snapshot()
    weights = gpu.allocated()
    req = music_request(wl)
    try:
        gpu.reset_peak()
        first, first_s = timed(gpu, lambda: engine.generate(req)[0])  # warm-up; includes compilation
        runs = [timed(gpu, lambda: engine.generate(req)[0]) for _ in range(wl.repeats)]
        mem_run = gpu.snapshot()
    finally:
        del engine
        release(v)
    render = [r.model_s for r, _ in runs]
    st = stats_of(render)
    return {
        "dtype": v.dtype, "torch_compile": v.torch_compile, "cpu_offload": v.cpu_offload, "baseline": v.baseline,
        "engine_options": dict(v.engine), "load_s": load_s, "weights_bytes": weights,
        "first_call_s": first.model_s, "first_call_overhead_s": first.model_s - st["best_s"],
        "compile_s": (first.model_s - st["best_s"]) if v.torch_compile else None,
        "render_s": st["best_s"], "render_s_median": st["median_s"], "render_samples_s": st["samples_s"],
        "rtf": st["best_s"] / wl.song_s, "rtf_median": st["median_s"] / wl.song_s,
        "encode_s": min(r.encode_s for r, _ in runs), "generate_s": min(s for _, s in runs),
        "audio": {"sample_rate": first.sample_rate, "channels": first.channels, "duration_s": first.duration_s,
                  "steps": first.steps},
        "memory_load": mem_load, "memory_run": mem_run, "peak_bytes": peak_of(mem_load, mem_run),
    }


def bench_music(path: str, rt: Runtime, wl: Workload, gpu: Gpu) -> dict[str, Any]:
    out, b = bench_variants("music", bench_music_variant, path, rt, wl, gpu,
                            {"model": MUSIC_SPECS[rt.music_variant], "song_s": wl.song_s, "steps": wl.music_steps})
    out["rtf"] = b.get("rtf")
    out["peak_bytes"] = b.get("peak_bytes")
    return out
