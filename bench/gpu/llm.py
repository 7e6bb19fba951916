"""LLM: tokens/s writing a lyric at batch 1 and batch 8 through `deployments.llm.LLMEngine`."""

from __future__ import annotations

import time
from typing import Any

from bench.gpu.measure import Gpu, forced_tokens, free_memory, peak_of, stats_of, timed
from bench.gpu.settings import LLM_BATCH_TARGET, PROD_DTYPES, SUBJECTS, Runtime, Workload


def llm_args(path: str, rt: Runtime, wl: Workload, dtype: str):
    from deployments.config import LLMArgs

    return LLMArgs(model=path, dtype=dtype, max_new_tokens_lyrics=wl.llm_new_tokens,
                   max_batch_size=max(wl.llm_batches), **rt.engine_common())


def llm_dtype(rt: Runtime) -> str:
    return PROD_DTYPES["llm"] if rt.cuda else "float32"


def bench_llm(path: str, rt: Runtime, wl: Workload, gpu: Gpu) -> dict[str, Any]:
    from deployments.llm import Completion, LLMEngine, lyrics_completion

    dtype = llm_dtype(rt)
    args = llm_args(path, rt, wl, dtype)
    gpu.clear()
    engine, load_s = timed(gpu, lambda: LLMEngine(args))
    mem_load = gpu.snapshot()
    weights = gpu.allocated()
    n = wl.llm_new_tokens
    chats = [lyrics_completion(args, s).chat for s in SUBJECTS]

    def run(batch: int, tokens: int):
        with forced_tokens(engine, tokens):
            return engine.complete_batch([Completion(c, tokens) for c in chats[:batch]])

    try:
        for b in wl.llm_batches:  # warm-up: kernels, cuBLAS handles, allocator pools for both shapes
            run(b, min(8, n))
        gpu.reset_peak()
        samples: dict[int, list[float]] = {b: [] for b in wl.llm_batches}
        walls: dict[int, list[float]] = {b: [] for b in wl.llm_batches}
        full_budget = True
        for _ in range(wl.repeats):  # interleaved, so drifting machine load hits both sizes alike
            for b in wl.llm_batches:
                c0 = time.process_time()
                answers, s = timed(gpu, lambda b=b: run(b, n))
                cpu_s = time.process_time() - c0
                samples[b].append(s if rt.cuda else cpu_s)
                walls[b].append(s)
                full_budget &= all(a.truncated for a in answers)  # no stop token before the budget
        mem_run = gpu.snapshot()
    finally:
        del engine
        free_memory()
    batches = {}
    for b, ss in samples.items():
        st = stats_of(ss)
        tokens = b * n
        batches[str(b)] = {"batch": b, "new_tokens_per_row": n, "tokens": tokens, **st,
                           "tokens_per_s": tokens / st["best_s"], "tokens_per_s_median": tokens / st["median_s"],
                           "wall_best_s": min(walls[b]), "wall_tokens_per_s": tokens / min(walls[b])}
    lo, hi = str(min(wl.llm_batches)), str(max(wl.llm_batches))
    ratio = batches[hi]["tokens_per_s"] / batches[lo]["tokens_per_s"]
    ratio_wall = batches[hi]["wall_tokens_per_s"] / batches[lo]["wall_tokens_per_s"]
    ratio_median = batches[hi]["tokens_per_s_median"] / batches[lo]["tokens_per_s_median"]
    return {
        "engine": f"deployments.llm.LLMEngine.complete_batch (greedy, repetition_penalty {args.repetition_penalty:g})",
        "dtype": dtype, "load_s": load_s, "weights_bytes": weights,
        # A shared CPU box's wall clock mostly measures the neighbours: on CPU the seconds are this
        # process's CPU time (one torch thread); wall-clock figures are kept beside them.
        "clock": "wall (CUDA-synchronized)" if rt.cuda else "process CPU time (time.process_time), 1 torch thread",
        "batches": batches, f"batch{hi}_over_batch{lo}": ratio, f"batch{hi}_over_batch{lo}_median": ratio_median,
        "throughput_ratio": ratio, "throughput_ratio_wall": ratio_wall,
        "target_ratio": LLM_BATCH_TARGET, "meets_target": ratio >= LLM_BATCH_TARGET,
        "all_rows_full_budget": full_budget,
        "memory_load": mem_load, "memory_run": mem_run, "peak_bytes": peak_of(mem_load, mem_run),
    }
