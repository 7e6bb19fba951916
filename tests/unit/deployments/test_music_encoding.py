"""The music deployment encodes off the render thread: the next song renders while one encodes.

Fake engines with `render` and `encode` (deployments.music.StagedMusicProtocol), no torch, no Ray
cluster: the encode is held on an event, so the test sees exactly what overlaps what.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from deployments.music import MusicDeployment, RenderedSong, StagedMusicProtocol
from deployments.protocol import MusicRequest, MusicResult, SongCancelled

WAIT = 10  # seconds: generous for a loaded 2-core CI machine; a pass takes milliseconds
STEPS = 2


class GatedEncode:
    """Renders in STEPS steps at once; every encode waits for `gate`. Records threads and order."""

    def __init__(self, args):
        self.args = args
        self.gate = threading.Event()
        self.encoding: dict[str, threading.Event] = {}
        self.rendered: dict[str, threading.Event] = {}
        self.threads: dict[str, str] = {}
        self.log: list[str] = []

    def ready(self) -> str:
        return "fake staged"

    def _mark(self, what: str, tag: str) -> None:
        self.log.append(f"{what} {tag}")
        self.threads[f"{what} {tag}"] = threading.current_thread().name

    def render(self, req, progress=None, cancel=None):
        self._mark("render", req.tags)
        for step in range(1, STEPS + 1):
            progress(step, STEPS)
            if cancel.is_set():
                raise SongCancelled(f"cancelled after step {step}")
        self.rendered.setdefault(req.tags, threading.Event()).set()
        return RenderedSong(audio=[[0.0] * 4] * 2, audio_format=req.audio_format, sample_rate=48000,
                            seed=req.seed, steps=STEPS, guidance_scale=1.0, model="fake", notes=[req.tags])

    def encode(self, song: RenderedSong) -> MusicResult:
        tag = song.notes[0]
        self._mark("encode", tag)
        self.encoding.setdefault(tag, threading.Event()).set()
        if not self.gate.wait(WAIT):
            raise AssertionError("the encode was never released")
        self.log.append(f"encoded {tag}")
        return MusicResult(audio=f"encoded {tag}".encode(), audio_format=song.audio_format, extension="wav",
                           content_type="audio/wav", sample_rate=song.sample_rate, channels=2, num_samples=4,
                           duration_s=4 / 48000, seed=song.seed, steps=song.steps, guidance_scale=1.0, model="fake")

    def generate(self, req, progress=None, cancel=None):  # the protocol's one-call form
        return self.encode(self.render(req, progress, cancel))


async def collect(stream) -> list:
    return [e async for e in stream]


async def wait_for(event: threading.Event) -> bool:
    return await asyncio.to_thread(event.wait, WAIT)


def deployment() -> MusicDeployment:
    dep = MusicDeployment.func_or_class({"model": "fake"}, engine_cls=GatedEncode)
    assert isinstance(dep.engine, StagedMusicProtocol)
    return dep


async def test_the_next_render_starts_while_the_previous_song_encodes():
    dep = deployment()
    eng = dep.engine
    eng.encoding["one"], eng.rendered["two"] = threading.Event(), threading.Event()
    first = asyncio.ensure_future(collect(dep.generate_stream(MusicRequest(tags="one", seed=1), "song-1")))
    assert await wait_for(eng.encoding["one"]), "the first song never reached its encode"
    second = asyncio.ensure_future(collect(dep.generate_stream(MusicRequest(tags="two", seed=2), "song-2")))
    # The first encode is still held, and the second song renders to its end meanwhile.
    assert await wait_for(eng.rendered["two"]), "the second render waited for the first encode"
    assert not first.done() and "encoded one" not in eng.log
    assert eng.log[:3] == ["render one", "encode one", "render two"]
    eng.gate.set()
    one, two = await asyncio.wait_for(asyncio.gather(first, second), WAIT)
    # The stream contract is unchanged: every step in order, then the encoded result.
    for events, tag, seed in ((one, "one", 1), (two, "two", 2)):
        assert events[:-1] == [("progress", (k, STEPS)) for k in range(1, STEPS + 1)]
        kind, result = events[-1]
        assert kind == "result" and result.audio == f"encoded {tag}".encode() and result.seed == seed
    # ThreadPoolExecutor names threads "<prefix>_<n>": the render pool's, then the encoders'.
    assert eng.threads["render one"].split("_")[0] == eng.threads["render two"].split("_")[0] == "music"
    assert eng.threads["encode one"].split("_")[0] == "music-encode"  # not the render thread
    assert dep._worker.idle.active == 0
    await dep.check_health()


async def test_cancelling_during_the_encode_frees_the_stream_and_the_render_thread():
    dep = deployment()
    eng = dep.engine
    eng.encoding["one"] = threading.Event()
    stream = dep.generate_stream(MusicRequest(tags="one"), "song-1")
    assert [await anext(stream) for _ in range(STEPS)] == [("progress", (k, STEPS)) for k in range(1, STEPS + 1)]
    pending = asyncio.ensure_future(anext(stream))
    assert await wait_for(eng.encoding["one"])
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    await stream.aclose()
    assert dep._worker.idle.active == 0
    eng.gate.set()  # the held encode finishes on its own thread; its result is dropped
    events = await asyncio.wait_for(collect(dep.generate_stream(MusicRequest(tags="two"), "song-2")), WAIT)
    assert events[-1][1].audio == b"encoded two"


async def test_encode_errors_reach_the_caller_after_every_step():
    class Failing(GatedEncode):
        def encode(self, song):
            raise ValueError("no such codec")

    dep = MusicDeployment.func_or_class({"model": "fake"}, engine_cls=Failing)
    seen = []
    with pytest.raises(ValueError, match="no such codec"):
        async for e in dep.generate_stream(MusicRequest(tags="x")):
            seen.append(e)
    assert seen == [("progress", (k, STEPS)) for k in range(1, STEPS + 1)]


async def test_health_fails_once_the_encode_pool_is_gone():
    dep = deployment()
    dep._encoder.pool.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        await dep.check_health()
