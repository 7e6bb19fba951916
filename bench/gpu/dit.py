"""The ACE-Step DiT: which attention kernels run, and its per-step time eager vs `torch_compile: true`.

Attention: what torch's SDPA may use here (`torch.backends.cuda` flash / mem-efficient / cuDNN /
math switches, and whether flash attention is built in), the dispatcher diffusers routes the DiT's
attention through (`diffusers.models.attention_dispatch`, its active backend) and, from one profiled
1-step render, which `aten::_scaled_dot_product_*` kernels SDPA actually picked (the sliding-window
layers pass a dense mask, which flash SDPA does not take).

Per step: timestamps of the pipeline's step-end callback (the engine's progress hook),
CUDA-synchronized; the median interval between steps. Compiled (CUDA only, the engines compile on
CUDA replicas only): the first render's extra time is the compile time, reported apart.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from typing import Any

from bench.gpu.measure import Gpu, error_entry, free_memory, lazy_torch, timed
from bench.gpu.music import music_args, music_request
from bench.gpu.settings import MUSIC_SPECS, Runtime, Workload
from bench.gpu.variants import Variant, release, variants


def sdpa_switches() -> dict[str, Any]:
    torch = lazy_torch()
    b = torch.backends.cuda
    out: dict[str, Any] = {}
    for name in ("flash_sdp_enabled", "mem_efficient_sdp_enabled", "math_sdp_enabled", "cudnn_sdp_enabled"):
        fn = getattr(b, name, None)
        out[name] = fn() if fn else None
    fn = getattr(b, "is_flash_attention_available", None)
    out["is_flash_attention_available"] = fn() if fn else None
    out["cuda_available"] = torch.cuda.is_available()
    return out


def diffusers_dispatch(engine) -> dict[str, Any]:
    try:
        from diffusers.models.attention_dispatch import _AttentionBackendRegistry

        active, _ = _AttentionBackendRegistry.get_active_backend()
        active = getattr(active, "value", str(active))
    except Exception as exc:  # noqa: BLE001 - informational, private API
        active = f"unknown ({type(exc).__name__}: {exc})"
    tr = engine.pipe.transformer
    tr = getattr(tr, "_orig_mod", tr)
    proc = None
    try:
        proc = tr.layers[0].self_attn.processor
    except (AttributeError, IndexError):
        pass
    per_proc = getattr(proc, "_attention_backend", None)
    return {"active_backend": active, "processor": type(proc).__name__ if proc is not None else None,
            "processor_backend": getattr(per_proc, "value", per_proc),
            "sliding_window": getattr(tr.config, "sliding_window", None)}


def sdpa_kernels_used(engine, wl: Workload, seconds: float) -> dict[str, int]:
    """aten::_scaled_dot_product_* ops (the kernel SDPA dispatched to) in one 1-step render."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        engine.render(music_request(wl, duration_s=seconds, steps=1))
    counts: Counter[str] = Counter()
    for ev in prof.events():
        if ev.name.startswith("aten::_scaled_dot_product") or ev.name.startswith("aten::_flash_attention") \
                or ev.name.startswith("aten::_efficient_attention") or ev.name.startswith("aten::_cudnn_attention"):
            counts[ev.name] += 1
    return dict(counts)


def _timed_render(engine, gpu: Gpu, wl: Workload) -> dict[str, Any]:
    ends: list[float] = []

    def progress(step: int, total: int) -> None:
        gpu.sync()
        ends.append(time.perf_counter())

    gpu.sync()
    t0 = time.perf_counter()
    res = engine.render(music_request(wl), progress=progress)[0]  # one take
    gpu.sync()
    wall = time.perf_counter() - t0
    steps = [b - a for a, b in zip(ends, ends[1:])]
    return {"render_s": res.model_s, "wall_s": wall, "first_step_end_s": (ends[0] - t0) if ends else None,
            "step_s": statistics.median(steps) if steps else None, "step_samples_s": [round(s, 5) for s in steps]}


def _engine(path: str, rt: Runtime, v: Variant):
    from deployments.music import MusicEngine

    return MusicEngine(music_args(path, rt, v))


def bench_dit(path: str, rt: Runtime, wl: Workload, gpu: Gpu) -> dict[str, Any]:
    vs, _ = variants("music", rt)
    base = next(v for v in vs if v.baseline)
    out: dict[str, Any] = {"model": MUSIC_SPECS[rt.music_variant], "dtype": base.dtype, "song_s": wl.song_s,
                           "steps": wl.music_steps, "sdpa": sdpa_switches()}
    gpu.clear()
    engine, load_s = timed(gpu, lambda: _engine(path, rt, base))
    try:
        out["dispatch"] = diffusers_dispatch(engine)
        first = _timed_render(engine, gpu, wl)  # warm-up
        eager = _timed_render(engine, gpu, wl)
        out["sdpa_kernels"] = sdpa_kernels_used(engine, wl, min(wl.song_s, 30.0))
        out["eager"] = {"load_s": load_s, "first_call_s": first["render_s"], **eager}
    finally:
        del engine
        free_memory()
    if not rt.cuda:
        out["compiled"] = {"skipped": "CUDA only: the engines apply torch_compile on CUDA replicas only "
                                      "(deployments/runtime.py load_diffusers_pipeline)"}
        return out
    v = Variant(f"{base.dtype}+compile", base.dtype, torch_compile=True)
    try:
        gpu.clear()
        engine, load_s = timed(gpu, lambda: _engine(path, rt, v))
        try:
            first = _timed_render(engine, gpu, wl)  # compiles the DiT for this song's shapes
            steady = _timed_render(engine, gpu, wl)
        finally:
            del engine
            release(v)
        out["compiled"] = {"load_s": load_s, "first_call_s": first["render_s"],
                           "compile_s": first["render_s"] - steady["render_s"], **steady,
                           "step_speedup": (out["eager"]["step_s"] / steady["step_s"])
                           if steady["step_s"] and out["eager"]["step_s"] else None}
    except Exception as exc:  # noqa: BLE001 - a compile failure is a result
        out["compiled"] = error_entry(exc)
        free_memory()
    return out
