"""Cover: latency of one SDXL-Turbo image at batch 1 and 4 through `deployments.cover.CoverEngine`."""

from __future__ import annotations

from typing import Any

from bench.gpu.measure import Gpu, peak_of, stats_of, timed
from bench.gpu.settings import SONG_TAGS, Runtime, Workload
from bench.gpu.variants import Variant, bench_variants, release


def cover_args(path: str, rt: Runtime, wl: Workload, v: Variant):
    from deployments.config import CoverArgs

    return CoverArgs(model=path, dtype=v.dtype, torch_compile=v.torch_compile, cpu_offload=v.cpu_offload,
                     steps=wl.cover_steps, size=wl.cover_size, max_batch_size=max(wl.cover_batches),
                     **rt.engine_common(), **dict(v.engine))


def bench_cover_variant(path: str, rt: Runtime, wl: Workload, gpu: Gpu, v: Variant) -> dict[str, Any]:
    from deployments.cover import CoverEngine, CoverRequest, cover_prompt

    gpu.clear()
    engine, load_s = timed(gpu, lambda: CoverEngine(cover_args(path, rt, wl, v)))
    mem_load = gpu.snapshot()
    weights = gpu.allocated()
    prompt = cover_prompt(SONG_TAGS, "Midnight Ride")
    batches: dict[str, Any] = {}
    try:
        gpu.reset_peak()
        for b in wl.cover_batches:
            reqs = [CoverRequest(prompt=prompt, seed=i) for i in range(b)]
            first, first_s = timed(gpu, lambda: engine.generate_batch(reqs))  # warm-up (+ compile for this shape)
            runs = [timed(gpu, lambda: engine.generate_batch(reqs)) for _ in range(wl.repeats)]
            model = [r[0].model_s for r, _ in runs]
            st = stats_of(model)
            batches[str(b)] = {
                "batch": b, "first_call_s": first[0].model_s,
                "compile_s": (first[0].model_s - st["best_s"]) if v.torch_compile else None,
                "latency_s": st["best_s"], "latency_s_median": st["median_s"], "samples_s": st["samples_s"],
                "images_per_s": b / st["best_s"], "with_png_s": min(s for _, s in runs),
                "size": [first[0].width, first[0].height], "steps": first[0].steps,
            }
        mem_run = gpu.snapshot()
    finally:
        del engine
        release(v)
    return {"dtype": v.dtype, "torch_compile": v.torch_compile, "cpu_offload": v.cpu_offload, "baseline": v.baseline,
            "engine_options": dict(v.engine), "load_s": load_s, "weights_bytes": weights, "batches": batches,
            "memory_load": mem_load, "memory_run": mem_run, "peak_bytes": peak_of(mem_load, mem_run)}


def bench_cover(path: str, rt: Runtime, wl: Workload, gpu: Gpu) -> dict[str, Any]:
    out, b = bench_variants("cover", bench_cover_variant, path, rt, wl, gpu,
                            {"model": "sdxl-turbo", "size": wl.cover_size, "steps": wl.cover_steps})
    out["latency_s"] = {k: x["latency_s"] for k, x in b.get("batches", {}).items()}
    out["peak_bytes"] = b.get("peak_bytes")
    return out
