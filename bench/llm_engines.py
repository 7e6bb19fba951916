"""The two LLM engines side by side on this machine, on the SmolLM2-135M-Instruct kit:
`python -m bench.llm_engines` -> bench/results/llm_engines.json and a Markdown table.

Each engine runs in our LLMDeployment class in this process (no Ray cluster: the same code a
replica runs). A song = its tags + lyrics + meta requests submitted together, as the composer
does; N songs are submitted at once. Reported: decode tokens per second over the whole run (the
answers' tokens / wall time), time to lyrics (submit -> lyrics answer) per song, and the engine's
start time. transformers runs as dev's fallback (unbatched, 2 threads); vLLM with 2 threads.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.common import machine, md_table, pct, write_result
from serve_app.localdev.cluster import MODELS

SUBJECTS = ["driving through a neon city at night", "an old dog waiting at the door", "summer on the beach",
            "a thunderstorm over the mountains", "cherry blossoms in spring", "a train leaving at dawn"]


def engine_args(engine: str, lyrics_tokens: int) -> dict:
    common = {"model": str(MODELS / "smollm2-135m-instruct"), "dtype": "bfloat16", "num_threads": 2,
              "max_new_tokens_lyrics": lyrics_tokens, "max_new_tokens_tags": 64, "max_new_tokens_meta": 48}
    if engine == "vllm":
        return {**common, "engine": "vllm", "kv_cache_gib": 0.5, "max_model_len": 2048, "max_num_seqs": 64}
    return {**common, "engine": "transformers", "max_batch_size": 1, "parallel_requests": 2}


async def run_songs(dep, tokenizer, n: int) -> dict:
    async def song(i: int):
        t0 = time.monotonic()
        subject = SUBJECTS[i % len(SUBJECTS)]
        seed = 1000 + i

        async def lyrics():
            w = await dep.lyrics(subject, seed=seed)
            return w, time.monotonic() - t0

        tags, (lyr, to_lyrics), meta = await asyncio.gather(dep.tags(subject, False, seed=seed), lyrics(),
                                                           dep.meta(subject, ["pop"], seed=seed))
        tokens = sum(len(tokenizer(w.raw, add_special_tokens=False)["input_ids"]) for w in (tags, lyr, meta))
        return to_lyrics, tokens

    t0 = time.monotonic()
    results = await asyncio.gather(*(song(i) for i in range(n)))
    wall = time.monotonic() - t0
    lyr = [r[0] for r in results]
    tokens = sum(r[1] for r in results)
    return {"songs": n, "wall_s": round(wall, 2), "tokens": tokens, "tok_s": round(tokens / wall, 1),
            "lyrics_p50_s": round(pct(lyr, 50), 2), "lyrics_max_s": round(max(lyr), 2)}


def run_levels(dep, concurrency: list[int], budget_s: float | None = None) -> list[dict]:
    """`run_songs` at each concurrency in turn, on ONE event loop (vLLM's AsyncLLM binds its output
    handler to the first loop). With `budget_s`, a level whose time, extrapolated linearly from the
    last level run (the worst case: no batching at all), would end past the budget is not run: its
    entry says so and carries that estimate (bench/gpu uses this to keep its run short)."""
    tokenizer = getattr(dep.engine, "tokenizer")

    async def all_runs():
        runs: list[dict] = []
        t0 = time.monotonic()
        for n in concurrency:
            done = [r for r in runs if "skipped" not in r]
            if budget_s is not None and done:
                estimate = done[-1]["wall_s"] * n / done[-1]["songs"]
                if time.monotonic() - t0 + estimate > budget_s:
                    runs.append({"songs": n, "estimate_s": round(estimate, 1), "skipped":
                                 f"over the {budget_s:g} s budget of this engine's runs: ~{estimate:.0f} s, "
                                 f"extrapolated linearly from {done[-1]['songs']} song(s)"})
                    continue
            runs.append(await run_songs(dep, tokenizer, n))
        return runs

    return asyncio.run(all_runs())


def bench_engine(engine: str, concurrency: list[int], lyrics_tokens: int) -> dict:
    from deployments.llm import LLMDeployment

    t0 = time.monotonic()
    dep = LLMDeployment.func_or_class(engine_args(engine, lyrics_tokens))
    start_s = time.monotonic() - t0
    try:
        runs = run_levels(dep, concurrency)
    finally:
        dep.shutdown()
    return {"engine": engine, "ready": dep.engine.ready(), "start_s": round(start_s, 1), "runs": runs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--lyrics-tokens", type=int, default=160)
    p.add_argument("--engines", nargs="+", default=["vllm", "transformers"])
    a = p.parse_args()
    results = [bench_engine(e, a.concurrency, a.lyrics_tokens) for e in a.engines]
    rows = [(r["engine"], r["start_s"], x["songs"], x["tok_s"], x["lyrics_p50_s"], x["lyrics_max_s"], x["wall_s"])
            for r in results for x in r["runs"]]
    table = md_table(["engine", "start s", "songs at once", "tok/s", "time to lyrics p50 s", "max s", "all done s"],
                     rows, "lrrrrrr")
    print("\n".join(table))
    path = write_result("llm_engines", {**machine(), "lyrics_tokens": a.lyrics_tokens, "results": results,
                                        "table": table})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
