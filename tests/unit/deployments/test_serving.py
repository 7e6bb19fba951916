"""The Serve classes' plumbing with fake engines: no Ray cluster, no torch, no model.

Each deployment's plain class (`XDeployment.func_or_class`) is built with `engine_cls=Fake`, so
these tests check only what the Serve layer adds: threads, batching, progress, cancel, trimming.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from contextlib import aclosing

import pytest

from deployments import memory
from deployments.audio_codec import CODECS, AudioFormat
from deployments.cover import CoverDeployment
from deployments.llm import LLMDeployment, lyrics_completion, meta_completion, tags_completion
from deployments.music import MusicDeployment
from deployments.protocol import (
    MAX_SEED,
    Answer,
    CoverProtocol,
    CoverRequest,
    CoverResult,
    LLMProtocol,
    MusicProtocol,
    MusicRequest,
    MusicResult,
    SongCancelled,
    resolve_seed,
)
from deployments.serving import Batcher

WAIT = 10  # seconds: generous for a loaded 2-core CI machine; a pass takes milliseconds


@pytest.fixture
def trims(monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(memory, "_MALLOC_TRIM", lambda pad: calls.append(pad) or 1)
    return calls


class FakeEngine:
    def __init__(self, args):
        self.args = args

    def ready(self) -> str:
        return f"fake {type(self).__name__}"


# -- music: the progress bridge and cancellation --


class FakeMusic(FakeEngine):
    """Reports `steps` steps; with `hold`, waits after step 1 until cancelled (a long render)."""

    steps, hold = 3, False

    def __init__(self, args):
        super().__init__(args)
        self.stopped = threading.Event()
        self.thread: str | None = None
        self.cancel: threading.Event | None = None

    def generate(self, req, progress=None, cancel=None):
        self.thread, self.cancel = threading.current_thread().name, cancel
        try:
            for step in range(1, self.steps + 1):
                progress(step, self.steps)
                if self.hold and not cancel.wait(WAIT):
                    raise AssertionError("the render was never cancelled")
                if cancel.is_set():
                    raise SongCancelled(f"cancelled after step {step}")
            return MusicResult(audio=b"RIFF", audio_format=req.audio_format, extension="wav",
                               content_type="audio/wav", sample_rate=48000, channels=2, num_samples=0,
                               duration_s=req.duration_s, seed=resolve_seed(req.seed), steps=self.steps,
                               guidance_scale=1.0, model="fake")
        finally:
            self.stopped.set()


class HeldMusic(FakeMusic):
    hold = True


def music(engine_cls=FakeMusic):
    dep = MusicDeployment.func_or_class({"model": "fake"}, engine_cls=engine_cls)
    assert isinstance(dep.engine, MusicProtocol)
    return dep


async def test_music_streams_every_step_in_order_then_the_result(trims):
    dep = music()
    events = [e async for e in dep.generate_stream(MusicRequest(tags="pop", seed=7), "song-1")]
    assert events[:-1] == [("progress", (k, 3)) for k in (1, 2, 3)]
    kind, result = events[-1]
    assert kind == "result" and result.seed == 7 and result.audio == b"RIFF"
    assert dep.engine.thread.startswith("music")  # rendered off the event loop
    assert await dep.ready() == "fake FakeMusic"
    await dep.check_health()
    assert dep._worker.idle.active == 0 and trims == [0]


@pytest.mark.parametrize("how", ["aclose", "cancel task"])
async def test_cancelling_the_stream_stops_the_render(trims, how):
    dep = music(HeldMusic)
    stream = dep.generate_stream(MusicRequest(tags="pop"), "song-2")
    if how == "aclose":  # Serve closes the generator when the caller goes away
        assert await anext(stream) == ("progress", (1, 3))
        await stream.aclose()
        assert dep.engine.cancel.is_set()  # at once, not when the garbage collector finalizes it
    else:  # or cancels the task consuming it
        first = asyncio.Event()

        async def consume():
            async with aclosing(stream):
                async for _ in stream:
                    first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), WAIT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await asyncio.to_thread(dep.engine.stopped.wait, WAIT), "the engine kept rendering"
    assert dep._worker.idle.active == 0 and trims == [0]
    # The replica's one render thread is free again: the next song renders.
    dep.engine = FakeMusic(dep.engine.args)
    events = [e async for e in dep.generate_stream(MusicRequest(tags="next"), "song-3")]
    assert events[-1][0] == "result"


async def test_engine_errors_reach_the_caller_after_their_progress(trims):
    class Failing(FakeMusic):
        def generate(self, req, progress=None, cancel=None):
            progress(1, 2)
            raise SongCancelled("boom")

    dep = music(Failing)
    seen = []
    with pytest.raises(SongCancelled, match="boom"):
        async for e in dep.generate_stream(MusicRequest(tags="x")):
            seen.append(e)
    assert seen == [("progress", (1, 2))] and trims == [0]


async def test_music_health_fails_once_its_pool_is_gone():
    dep = music()
    dep._worker.pool.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        await dep.check_health()


# -- LLM: batched and unbatched paths --


class FakeLLM(FakeEngine):
    """Answers each chat with its own last message; records the batches it was given."""

    barrier: threading.Barrier | None = None

    def __init__(self, args):
        super().__init__(args)
        self.batches: list[int] = []
        self.threads: set[str] = set()

    def complete_batch(self, items):
        self.batches.append(len(items))
        self.threads.add(threading.current_thread().name)
        if self.barrier is not None:
            self.barrier.wait(WAIT)  # passes only with enough calls side by side
        return [Answer(text="echo: " + it.chat[-1]["content"][-40:], truncated=False) for it in items]


def _echo(completion) -> str:
    return "echo: " + completion.chat[-1]["content"][-40:]


async def _ask_all(dep):
    args = dep.args
    got = await asyncio.gather(
        dep.tags("a jazz song", True),
        dep.lyrics("rain on the roof"),
        dep.meta("a jazz song", ["jazz"], "la la"),
        dep.tags("a metal song", False),
    )
    want = [tags_completion(args, "a jazz song", True), lyrics_completion(args, "rain on the roof"),
            meta_completion(args, "a jazz song", ["jazz"]), tags_completion(args, "a metal song", False)]
    assert [w.kind for w in got] == ["tags", "lyrics", "meta", "tags"]
    assert [w.raw for w in got] == [_echo(c) for c in want]  # each caller gets its own answer
    assert all(0 < w.started_at <= w.finished_at and w.model == "fake-llm" for w in got)
    return got


async def test_llm_batches_concurrent_prompts_into_one_call(trims):
    dep = LLMDeployment.func_or_class(
        {"model": "fake-llm", "max_batch_size": 4, "batch_wait_timeout_s": 0.5}, engine_cls=FakeLLM
    )
    assert isinstance(dep.engine, LLMProtocol)
    await _ask_all(dep)
    assert dep.engine.batches == [4]
    assert await dep.ready() == "fake FakeLLM"
    assert dep._worker.idle.active == 0 and trims == [0]  # one trim, when the last answer is out


async def test_llm_unbatched_runs_prompts_side_by_side(trims):
    class Pair(FakeLLM):
        barrier = threading.Barrier(2)

    dep = LLMDeployment.func_or_class(
        {"model": "fake-llm", "max_batch_size": 1, "parallel_requests": 2}, engine_cls=Pair
    )
    await _ask_all(dep)
    assert dep.engine.batches == [1, 1, 1, 1] and len(dep.engine.threads) == 2
    assert dep._worker.idle.active == 0 and len(trims) >= 1


# -- covers: batched --


class FakeCover(FakeEngine):
    def __init__(self, args):
        super().__init__(args)
        self.batches: list[list[str]] = []

    def generate_batch(self, reqs):
        self.batches.append([r.prompt for r in reqs])
        return [CoverResult(png=r.prompt.encode(), width=1, height=1, seed=resolve_seed(r.seed), steps=1,
                            prompt=r.prompt, model="fake", started_at=0.0, finished_at=0.0, model_s=0.0)
                for r in reqs]


@pytest.mark.parametrize(("batch", "want"), [(4, [["a", "b", "c"]]), (2, [["a", "b"], ["c"]])])
async def test_cover_batches_concurrent_covers(trims, batch, want):
    dep = CoverDeployment.func_or_class(
        {"model": "fake", "max_batch_size": batch, "batch_wait_timeout_s": 0.5}, engine_cls=FakeCover
    )
    assert isinstance(dep.engine, CoverProtocol)
    got = await asyncio.gather(*(dep.generate(CoverRequest(prompt=p, seed=i)) for i, p in enumerate("abc")))
    assert [(r.prompt, r.png, r.seed) for r in got] == [("a", b"a", 0), ("b", b"b", 1), ("c", b"c", 2)]
    assert dep.engine.batches == want
    assert await dep.ready() == "fake FakeCover"
    assert dep._worker.idle.active == 0 and len(trims) >= 1


# -- the shared vocabulary --


def test_seeds_come_from_one_range():
    assert resolve_seed(5) == 5 and resolve_seed(0) == 0
    drawn = {resolve_seed(s) for s in (None, -1, -1, -1)}
    assert all(0 <= s < MAX_SEED for s in drawn) and MAX_SEED == 2**31 - 1


def test_every_audio_format_has_a_codec():
    from typing import get_args

    assert set(CODECS) == set(get_args(AudioFormat)) == {"wav", "flac", "mp3", "opus"}


def test_the_serve_layer_needs_neither_torch_nor_a_ray_cluster():
    """The ingress imports these modules; torch loads only inside an engine's constructor."""
    code = (
        "import json, sys\n"
        "import deployments.protocol, deployments.serving, deployments.music, deployments.llm, deployments.cover\n"
        "import ray\n"
        "print(json.dumps(['torch' in sys.modules, ray.is_initialized()]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [False, False]


# -- the batcher itself --


async def test_the_batcher_fills_a_batch_or_runs_what_it_has_after_the_wait():
    seen: list[list[int]] = []

    async def double(items):
        seen.append(list(items))
        return [2 * i for i in items]

    full = Batcher(double, max_batch_size=3, wait_s=5.0)
    assert await asyncio.gather(*(full.submit(i) for i in range(3))) == [0, 2, 4]
    short = Batcher(double, max_batch_size=8, wait_s=0.01)
    assert await asyncio.gather(*(short.submit(i) for i in (5, 6))) == [10, 12]
    assert seen == [[0, 1, 2], [5, 6]]


async def test_a_failing_batch_fails_each_of_its_callers_and_the_next_batch_runs():
    calls = 0

    async def flaky(items):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("engine fell over")
        return items[:1]  # one result for two items: a broken engine

    b = Batcher(flaky, max_batch_size=2, wait_s=0.01)
    got = await asyncio.gather(b.submit(1), b.submit(2), return_exceptions=True)
    assert [str(e) for e in got] == ["engine fell over"] * 2
    got = await asyncio.gather(b.submit(1), b.submit(2), return_exceptions=True)
    assert [str(e) for e in got] == ["a batch of 2 got 1 results"] * 2


async def test_a_caller_that_gives_up_is_left_out_of_its_batch():
    seen: list[list[str]] = []

    async def echo(items):
        seen.append(list(items))
        return items

    b = Batcher(echo, max_batch_size=4, wait_s=0.05)
    gone = asyncio.ensure_future(b.submit("gone"))
    await asyncio.sleep(0)
    gone.cancel()
    assert await b.submit("kept") == "kept"
    assert seen == [["kept"]]
