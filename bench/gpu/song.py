"""One song through the three loaded engines by the app's own composer, in this process (no Ray).

`serve_app.songs.SongComposer` runs its step graph (tags ∥ lyrics ∥ meta → cover after the tags ∥
music after the tags and lyrics, streamed → uploads → manifest) over `LocalHandles`, which call the
deployments' own Python classes (`XDeployment.func_or_class`) built around the engines the
benchmark already loaded, and stores the song in a `LocalStore` in a temporary directory.

Each song runs in its own `asyncio.run`: the deployments batch with a per-instance `Batcher`
(deployments/serving.py), not @serve.batch, whose queue is shared by the class, bound to the loop
of its first call and needs a Serve replica context.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import threading
import time
from typing import Any

from bench.gpu.measure import Gpu, forced_tokens, lazy_torch
from bench.gpu.settings import SONG_DESCRIPTION, Workload

ORDER = ("tags || lyrics || meta (one LLM batch) -> cover (after tags) || music (after tags+lyrics, "
         "streamed) -> upload audio || cover -> manifest (serve_app.songs.SongComposer over LocalHandles: "
         "the deployment classes in one process, no Ray)")


class ForcedLLM:
    """The loaded LLMEngine with every batch forced to its longest row's budget.

    Random weights stop early; `forced_tokens` suppresses the stop tokens, and each row still ends
    at its own budget (LLMEngine's per-row stopping), so every row writes exactly its budget: the
    batch of tags, lyrics and meta costs what real prompts of full length would. Forcing per call
    (not around the whole song) keeps each generate() forced to exactly its own batch's longest
    budget, whichever way the deployment groups the prompts. `forced_tokens` edits the model's shared
    generation_config, so calls are serialized (the batched deployment runs one generate at a time
    anyway).
    """

    def __init__(self, engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()

    def complete_batch(self, items):
        budgets = [it.max_new_tokens for it in items]
        with self._lock, forced_tokens(self.engine, max(budgets)):
            return self.engine.complete_batch(items)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)


def song_task(wl: Workload):
    """The benchmark's song as the app's description-mode task (serve_app/songs/task.py)."""
    from serve_app.songs import SongTask

    return SongTask.from_request("description", {
        "full_described_song": SONG_DESCRIPTION, "audio_duration": wl.song_s, "seed": 0,
        "guidance_scale": None, "infer_step": wl.music_steps, "instrumental": False, "audio_format": "wav",
    })


def _span(timings: dict[str, dict[str, float]], name: str) -> dict[str, float]:
    if name not in timings:
        raise RuntimeError(f"the composer's timings have no {name!r} span: {sorted(timings)}")
    return timings[name]


def song_numbers(timings: dict[str, dict[str, float]], words_tokens: int, wall_s: float) -> dict[str, Any]:
    """The result keys from the composer's SongResult.timings (seconds from the song's start) and wall time."""
    tags, lyrics, meta = (_span(timings, n) for n in ("tags", "lyrics", "meta"))
    music, cover = _span(timings, "music"), _span(timings, "cover")
    words_end = max(tags["end_s"], lyrics["end_s"])
    return {
        "words_s": round(words_end - min(tags["start_s"], lyrics["start_s"]), 4),
        "words_tokens": words_tokens,
        "music_s": music["seconds"],
        "cover_s": cover["seconds"],
        "meta_s": meta["seconds"],
        "fan_out_s": round(max(music["end_s"], cover["end_s"], meta["end_s"]) - words_end, 4),
        "total_s": wall_s,
        "order": ORDER,
    }


def run_song_through_engines(
    llm, music, cover, wl: Workload, gpu: Gpu, num_threads: int | None = None
) -> dict[str, Any]:
    """One description-mode song of `wl` (its duration and steps, seed 0) through `SongComposer`.

    The engines are injected into the deployments' plain classes (`engine_cls=lambda args: engine`),
    so nothing loads twice; the deployments are built per song from the engines' current args (the
    warm-up shrinks the LLM budgets). What the music renders is what the composer made of the LLM's
    words: with random weights, the parsed (or fallback) tags and lyrics, not bench/gpu/settings.py's
    fixed lyric.

    Keys (kept from the thread-based copy this replaces; spans are the composer's timings, which
    the deployments stamp from their own clocks):
      words_s     first of tags/lyrics started → last finished: the LLM batch on the critical path,
                  its batch wait included (meta rides in the same batch now).
      words_tokens the longest of the tags and lyrics budgets; every row is forced to its budget
                  (ForcedLLM).
      music_s     the music engine's render + audio encode (MusicResult started_at → finished_at).
      cover_s     the cover engine's pipeline call (CoverResult started_at → finished_at; PNG encode
                  not included).
      meta_s      the meta call, batch wait included: in the words batch, so ≈ words_s, not a
                  separate generate() as before.
      fan_out_s   words done → music, cover and meta all done (the uploads start then).
      total_s     wall time of `composer.compose` (storage, uploads and manifest included).
    `num_threads`: torch's intra-op thread count is process-wide and the deployments' worker
    threads inherit it (checked on torch 2.13), so it is set once here, before the song.
    """
    from deployments.cover import CoverDeployment
    from deployments.llm import LLMDeployment
    from deployments.music import MusicDeployment
    from serve_app.songs import LocalHandles, SongComposer
    from serve_app.storage import LocalStore

    if num_threads:
        lazy_torch().set_num_threads(num_threads)
    a = llm.args
    words_tokens = max(a.max_new_tokens_tags, a.max_new_tokens_lyrics)
    forced = ForcedLLM(llm)
    with tempfile.TemporaryDirectory(prefix="songsmith-bench-song-") as root:
        deps = (LLMDeployment.func_or_class(a, engine_cls=lambda _args: forced),
                MusicDeployment.func_or_class(music.args, engine_cls=lambda _args: music),
                CoverDeployment.func_or_class(cover.args, engine_cls=lambda _args: cover))
        composer = SongComposer(LocalHandles(*deps), LocalStore(root, secrets.token_bytes(32)))
        task = song_task(wl)

        async def compose():
            gpu.sync()
            t0 = time.perf_counter()
            result = await composer.compose(task)
            gpu.sync()
            return result, time.perf_counter() - t0

        try:
            result, wall_s = asyncio.run(compose())
        finally:
            for dep in deps:
                dep._worker.pool.shutdown(wait=False)
    return song_numbers(result.timings, words_tokens, wall_s)
