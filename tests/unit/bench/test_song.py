"""bench/gpu/song.py: one song through the app's SongComposer over LocalHandles, with fake engines.

No torch, no models, no Ray cluster: the deployments' plain classes around fake engines, two songs
in a row (the benchmark's warm-up, then the timed one), each in its own asyncio.run.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from bench.gpu import song
from bench.gpu.settings import Workload
from deployments.config import CoverArgs, LLMArgs, MusicArgs
from deployments.protocol import Answer, CoverResult, MusicResult


class LLM:
    def __init__(self):
        self.args = LLMArgs(model="fake-llm", max_new_tokens_lyrics=128, max_batch_size=8, warmup=False)
        self.model = SimpleNamespace(generation_config=SimpleNamespace(min_new_tokens=None))
        self.calls = []

    def complete_batch(self, items):
        self.calls.append({"budgets": [it.max_new_tokens for it in items],
                           "forced": self.model.generation_config.min_new_tokens})
        time.sleep(0.02)
        return [Answer("synthwave, upbeat, night drive, analog synth\n[verse]\nla la\nla la", truncated=False)
                for _ in items]

    def ready(self):
        return "fake llm"


class Music:
    args = MusicArgs(model="fake-music", warmup=False)

    def generate(self, req, progress=None, cancel=None):
        started = time.time()
        for i in range(req.steps):
            time.sleep(0.01)
            progress(i + 1, req.steps)
        return MusicResult(audio=b"RIFF", audio_format="wav", extension="wav", content_type="audio/wav",
                           sample_rate=48000, channels=2, num_samples=int(req.duration_s * 48000),
                           duration_s=req.duration_s, seed=req.seed, steps=req.steps, guidance_scale=1.0,
                           model="fake-music", started_at=started, finished_at=time.time())

    def ready(self):
        return "fake music"


class Cover:
    args = CoverArgs(model="fake-cover", warmup=False)

    def generate_batch(self, reqs):
        started = time.time()
        time.sleep(0.01)
        return [CoverResult(png=b"\x89PNG", width=8, height=8, seed=1, steps=1, prompt=r.prompt, model="fake-cover",
                            started_at=started, finished_at=time.time(), model_s=0.01) for r in reqs]

    def ready(self):
        return "fake cover"


@pytest.fixture(scope="module")
def ran() -> dict:
    llm, gpu = LLM(), SimpleNamespace(sync=lambda: None)
    wl = Workload(llm_new_tokens=128, song_s=10.0, cover_size=256, repeats=1, music_steps=3)
    songs = [song.run_song_through_engines(llm, Music(), Cover(), wl, gpu) for _ in range(2)]
    return {"songs": songs, "calls": llm.calls}


def test_two_songs_in_one_process_report_the_benchmark_keys(ran):
    for s in ran["songs"]:
        assert set(s) == {"words_s", "words_tokens", "music_s", "cover_s", "meta_s", "fan_out_s", "total_s", "order"}
        assert s["total_s"] >= s["words_s"] > 0 and s["music_s"] > 0 and s["cover_s"] > 0 and s["meta_s"] > 0
        assert s["fan_out_s"] >= s["music_s"] - 0.01
        assert s["words_tokens"] == 128 and "SongComposer" in s["order"]


def test_tags_lyrics_and_meta_share_one_forced_batch(ran):
    # Each song: one generate() for tags, lyrics and meta (the LLM Batcher), forced to its longest budget.
    assert ran["calls"] == [{"budgets": [64, 128, 48], "forced": 128}] * 2


def test_song_numbers_come_from_the_composer_timings():
    span = lambda a, b: {"start_s": a, "end_s": b, "seconds": round(b - a, 4)}  # noqa: E731
    timings = {"tags": span(0.0, 1.0), "lyrics": span(0.0, 1.2), "meta": span(0.0, 1.1), "cover": span(1.0, 1.5),
               "music": span(1.2, 4.2), "upload_audio": span(4.2, 4.3), "upload_cover": span(4.2, 4.25),
               "upload_manifest": span(4.3, 4.35), "total": span(0.0, 4.35)}
    s = song.song_numbers(timings, 128, wall_s=4.4)
    assert s["words_s"] == pytest.approx(1.2) and s["music_s"] == pytest.approx(3.0)
    assert s["cover_s"] == pytest.approx(0.5) and s["meta_s"] == pytest.approx(1.1)
    assert s["fan_out_s"] == pytest.approx(3.0) and s["total_s"] == 4.4
