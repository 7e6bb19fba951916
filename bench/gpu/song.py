"""One song through the three engines in this process, in the app's order (no Ray).

To be replaced by the song composer's own fan-out (serve_app/songs/composer.py), which is being
reshaped so the benchmark can call it; until then this copy keeps its current semantics.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from bench.gpu.measure import Gpu, forced_tokens, lazy_torch, timed
from bench.gpu.music import music_request
from bench.gpu.settings import SONG_DESCRIPTION, SONG_TAGS, Workload


def run_song_through_engines(
    llm, music, cover, wl: Workload, gpu: Gpu, num_threads: int | None = None
) -> dict[str, Any]:
    """One song in the app's order (serve_app/songs/composer.py), in this process, no Ray:
    tags ∥ lyrics (one batched generate) → music ∥ cover ∥ title+categories.

    The music renders the benchmark's fixed lyric (random weights write gibberish of the right length).
    """
    from deployments.cover import CoverRequest, cover_prompt
    from deployments.llm import lyrics_completion, meta_completion, tags_completion

    a = llm.args
    t0 = time.perf_counter()
    words_budget = max(a.max_new_tokens_tags, a.max_new_tokens_lyrics)
    with forced_tokens(llm, words_budget):
        _, words_s = timed(gpu, lambda: llm.complete_batch(
            [tags_completion(a, SONG_DESCRIPTION, False), lyrics_completion(a, SONG_DESCRIPTION)]))
    spans: dict[str, float] = {}
    errors: list[BaseException] = []

    def job(name: str, fn: Callable[[], Any]) -> threading.Thread:
        def target():
            if num_threads:  # the engines' num_threads, for these worker threads too
                lazy_torch().set_num_threads(num_threads)
            s = time.perf_counter()
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)
            spans[name] = time.perf_counter() - s

        th = threading.Thread(target=target, name=f"song-{name}")
        th.start()
        return th

    def meta():
        with forced_tokens(llm, a.max_new_tokens_meta):
            llm.complete_batch([meta_completion(a, SONG_DESCRIPTION, SONG_TAGS.split(", "))])

    t1 = time.perf_counter()
    workers = [
        job("music", lambda: music.generate(music_request(wl))),
        job("cover", lambda: cover.generate_batch([CoverRequest(prompt=cover_prompt(SONG_TAGS), seed=0)])),
        job("meta", meta),
    ]
    for th in workers:
        th.join()
    gpu.sync()
    if errors:
        raise errors[0]
    fan_s = time.perf_counter() - t1
    return {"words_s": words_s, "words_tokens": words_budget, "music_s": spans["music"], "cover_s": spans["cover"],
            "meta_s": spans["meta"], "fan_out_s": fan_s, "total_s": time.perf_counter() - t0,
            "order": "tags+lyrics (batched) -> music || cover || title+categories (threads, one process, no Ray)"}
