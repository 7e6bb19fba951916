"""All three engines resident in one process: memory after loading and while running one song."""

from __future__ import annotations

import contextlib
from typing import Any

from bench.gpu.cover import cover_args
from bench.gpu.llm import llm_args, llm_dtype
from bench.gpu.measure import Gpu, free_memory, peak_of, timed
from bench.gpu.music import music_args
from bench.gpu.settings import Runtime, Workload
from bench.gpu.song import run_song_through_engines
from bench.gpu.variants import variants


def bench_resident(dirs: dict[str, Any], rt: Runtime, wl: Workload, gpu: Gpu) -> dict[str, Any]:
    from deployments.cover import CoverEngine
    from deployments.llm import LLMEngine
    from deployments.music import MusicEngine

    mv, _ = variants("music", rt)
    cv, _ = variants("cover", rt)
    mbase = next(v for v in mv if v.baseline)
    cbase = next(v for v in cv if v.baseline)
    gpu.clear()
    engines: dict[str, Any] = {}
    loaded: dict[str, Any] = {}
    try:
        before = gpu.allocated() or 0
        for name, make in (
            ("llm", lambda: LLMEngine(llm_args(dirs["llm"]["path"], rt, wl, llm_dtype(rt)))),
            ("music", lambda: MusicEngine(music_args(dirs["music"]["path"], rt, mbase))),
            ("cover", lambda: CoverEngine(cover_args(dirs["cover"]["path"], rt, wl, cbase))),
        ):
            engines[name], s = timed(gpu, make)
            now = gpu.allocated()
            loaded[name] = {"load_s": s, "weights_bytes": None if now is None else now - before}
            before = now or 0
        after_load = gpu.snapshot()
        # Warm-up: a short song, so the timed one measures steady state.
        short = Workload(llm_new_tokens=8, song_s=min(10.0, wl.song_s), cover_size=wl.cover_size, repeats=1,
                         music_steps=1)
        with _llm_budgets(engines["llm"], 8):
            run_song_through_engines(engines["llm"], engines["music"], engines["cover"], short, gpu, rt.threads)
        gpu.reset_peak()
        song = run_song_through_engines(engines["llm"], engines["music"], engines["cover"], wl, gpu, rt.threads)
        after_run = gpu.snapshot()
    finally:
        engines.clear()
        free_memory()
    return {
        "engines": loaded, "dtypes": {"llm": llm_dtype(rt), "music": mbase.dtype, "cover": cbase.dtype},
        "allocated_after_load_bytes": after_load.get("allocated_bytes"),
        "memory_after_load": after_load, "memory_after_run": after_run,
        "peak_bytes": peak_of(after_load, after_run), "peak_reserved_bytes": after_run.get("peak_reserved_bytes"),
        "song_engines": song,
    }


@contextlib.contextmanager
def _llm_budgets(engine, n: int):
    """Shrink every LLM budget (warm-up songs)."""
    a = engine.args
    old = (a.max_new_tokens_tags, a.max_new_tokens_lyrics, a.max_new_tokens_meta)
    engine.args = a.model_copy(update={"max_new_tokens_tags": n, "max_new_tokens_lyrics": max(16, n),
                                       "max_new_tokens_meta": n})
    try:
        yield
    finally:
        engine.args = a.model_copy(update=dict(zip(("max_new_tokens_tags", "max_new_tokens_lyrics",
                                                    "max_new_tokens_meta"), old)))
