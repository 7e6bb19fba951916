"""The music deployment streams one result per take, in take order, each encoded on the encoder
pool; and answers `capabilities()`. Fake engines, no torch, no Ray cluster."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from deployments.music import MusicDeployment, RenderedSong
from deployments.protocol import (
    BASE_ONLY_TASKS,
    EDIT_TASKS,
    MAX_TAKES,
    MusicCapabilities,
    MusicRequest,
    MusicResult,
    resolve_seed,
    take_seed,
)

WAIT = 10  # seconds: generous for a loaded 2-core machine; a pass takes milliseconds
STEPS = 2


def result(seed: int, take: int, tag: str) -> MusicResult:
    return MusicResult(audio=f"{tag} take {take}".encode(), audio_format="wav", extension="wav",
                       content_type="audio/wav", sample_rate=48000, channels=2, num_samples=4,
                       duration_s=4 / 48000, seed=seed, steps=STEPS, guidance_scale=1.0, model="fake", take=take)


class StagedTakes:
    """Renders every take at once; encode k waits on gates[k], so a test orders the encodes."""

    def __init__(self, args):
        self.args = args
        self.gates: dict[int, threading.Event] = {}
        self.started: list[int] = []
        self.threads: dict[str, str] = {}

    def ready(self) -> str:
        return "fake takes"

    def render(self, req, progress=None, cancel=None):
        self.threads["render"] = threading.current_thread().name
        for step in range(1, STEPS + 1):
            progress(step, STEPS)
        seed = resolve_seed(req.seed)
        return [RenderedSong(audio=np.zeros((2, 4), np.float32), audio_format=req.audio_format, sample_rate=48000,
                             seed=take_seed(seed, k), steps=STEPS, guidance_scale=1.0, model="fake",
                             notes=[req.tags], take=k) for k in range(req.takes)]

    def encode(self, song: RenderedSong) -> MusicResult:
        self.started.append(song.take)
        self.threads[f"encode {song.take}"] = threading.current_thread().name
        gate = self.gates.get(song.take)
        if gate is not None and not gate.wait(WAIT):
            raise AssertionError(f"encode {song.take} was never released")
        return result(song.seed, song.take, song.notes[0])

    def generate(self, req, progress=None, cancel=None):
        return [self.encode(s) for s in self.render(req, progress, cancel)]


def deployment(engine_cls=StagedTakes, **args) -> MusicDeployment:
    return MusicDeployment.func_or_class({"model": "fake", **args}, engine_cls=engine_cls)


async def collect(stream) -> list:
    return [e async for e in stream]


async def test_every_take_streams_once_in_take_order_after_the_steps():
    dep = deployment()
    events = await asyncio.wait_for(collect(dep.generate_stream(MusicRequest(tags="song", seed=100, takes=3))), WAIT)
    assert events[:STEPS] == [("progress", (k, STEPS)) for k in range(1, STEPS + 1)]
    results = [payload for kind, payload in events[STEPS:]]
    assert [kind for kind, _ in events[STEPS:]] == ["result"] * 3
    assert [r.take for r in results] == [0, 1, 2]
    assert [r.seed for r in results] == [100, 101, 102] == [take_seed(100, k) for k in range(3)]
    assert [r.audio for r in results] == [f"song take {k}".encode() for k in range(3)]
    eng = dep.engine
    assert eng.threads["render"].split("_")[0] == "music"
    assert {eng.threads[f"encode {k}"].split("_")[0] for k in range(3)} == {"music-encode"}  # never the render thread
    assert dep._worker.idle.active == 0


async def test_takes_come_back_in_order_even_when_a_later_take_encodes_first():
    dep = deployment(encode_threads=2)
    dep.engine.gates = {0: threading.Event()}  # take 0's encode is held; take 1 runs beside it
    stream = dep.generate_stream(MusicRequest(tags="song", seed=7, takes=2))
    assert [await anext(stream) for _ in range(STEPS)] == [("progress", (k, STEPS)) for k in range(1, STEPS + 1)]
    first = asyncio.ensure_future(anext(stream))
    for _ in range(200):
        if 1 in dep.engine.started:
            break
        await asyncio.sleep(0.01)
    assert dep.engine.started[:2] in ([0, 1], [1, 0]) and not first.done()  # take 1 encoded; take 0 not out yet
    dep.engine.gates[0].set()
    kind, r0 = await asyncio.wait_for(first, WAIT)
    kind1, r1 = await asyncio.wait_for(anext(stream), WAIT)
    assert (kind, r0.take, kind1, r1.take) == ("result", 0, "result", 1)
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_cancelling_after_the_first_take_never_starts_the_queued_encodes():
    dep = deployment()  # one encode thread: takes 1-3 queue behind take 0
    gate = threading.Event()
    dep.engine.gates = {0: gate}
    stream = dep.generate_stream(MusicRequest(tags="song", takes=4))
    for _ in range(STEPS):
        await anext(stream)
    pending = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.05)
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    await stream.aclose()
    gate.set()  # the running encode finishes on its thread; its result is dropped
    await asyncio.sleep(0.1)
    assert dep.engine.started == [0]
    assert dep._worker.idle.active == 0


async def test_an_encode_error_reaches_the_caller_after_the_takes_before_it():
    class Failing(StagedTakes):
        def encode(self, song):
            if song.take == 1:
                raise ValueError("no such codec")
            return super().encode(song)

    dep = deployment(Failing)
    seen = []
    with pytest.raises(ValueError, match="no such codec"):
        async for e in dep.generate_stream(MusicRequest(tags="x", takes=3)):
            seen.append(e)
    assert [k for k, _ in seen] == ["progress"] * STEPS + ["result"] and seen[-1][1].take == 0


class PlainOne:
    """A plain MusicProtocol engine from before takes: generate returns one MusicResult."""

    def __init__(self, args):
        self.args = args

    def ready(self) -> str:
        return "plain"

    def generate(self, req, progress=None, cancel=None):
        progress(1, 1)
        return result(resolve_seed(req.seed), 0, req.tags)


class PlainTakes(PlainOne):
    def generate(self, req, progress=None, cancel=None):
        progress(1, 1)
        return [result(take_seed(req.seed, k), k, req.tags) for k in range(req.takes)]


async def test_a_plain_engine_returning_one_result_still_streams_it():
    dep = deployment(PlainOne)
    events = await asyncio.wait_for(collect(dep.generate_stream(MusicRequest(tags="old", seed=3))), WAIT)
    assert [k for k, _ in events] == ["progress", "result"]
    assert events[-1][1].audio == b"old take 0" and events[-1][1].seed == 3


async def test_a_plain_engine_returning_takes_streams_each():
    dep = deployment(PlainTakes)
    events = await asyncio.wait_for(collect(dep.generate_stream(MusicRequest(tags="p", seed=9, takes=2))), WAIT)
    assert [(k, getattr(p, "take", None)) for k, p in events] == [("progress", None), ("result", 0), ("result", 1)]
    assert [p.seed for _, p in events[1:]] == [9, 10]


async def test_capabilities_come_from_the_engine_or_default_to_a_turbo_model():
    class WithCaps(PlainOne):
        def capabilities(self):
            return MusicCapabilities(model="m", is_turbo=False, sample_rate=44100, tasks=["text2music", "extract"],
                                     track_names=["drums"])

    caps = await deployment(WithCaps).capabilities()
    assert (caps.is_turbo, caps.sample_rate, caps.tasks) == (False, 44100, ["text2music", "extract"])
    fallback = await deployment(PlainOne).capabilities()
    assert fallback.model == "fake" and fallback.is_turbo is True and fallback.sample_rate == 48000
    assert fallback.tasks == ["text2music", "cover", "repaint", "extend"]
    assert set(fallback.tasks) == {"text2music", *EDIT_TASKS} - BASE_ONLY_TASKS
    assert fallback.max_takes == MAX_TAKES and set(fallback.unavailable) == BASE_ONLY_TASKS
