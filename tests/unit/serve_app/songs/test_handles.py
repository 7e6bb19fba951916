"""RayHandles over fake deployment handles: a call whose replica died is made once more in the
same song attempt (Serve's router has dropped that replica by then); other errors are not."""

from __future__ import annotations

import asyncio

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError

from deployments.protocol import MusicCapabilities, MusicRequest
from serve_app.songs.handles import RayHandles

SONG = MusicRequest(tags="pop")


class Response:
    """A DeploymentResponse stand-in: awaiting it returns `value` or raises it."""

    def __init__(self, value):
        self.value, self.cancelled = value, False

    def __await__(self):
        async def get():
            await asyncio.sleep(0)
            if isinstance(self.value, BaseException):
                raise self.value
            return self.value
        return get().__await__()

    def cancel(self):
        self.cancelled = True


class Stream:
    """A streaming DeploymentResponseGenerator stand-in: yields items, then raises if told to."""

    def __init__(self, items, error=None):
        self.items, self.error, self.cancelled = list(items), error, False

    def __aiter__(self):
        return self._gen()

    async def _gen(self):
        for item in self.items:
            await asyncio.sleep(0)
            yield item
        if self.error is not None:
            raise self.error

    def cancel(self):
        self.cancelled = True


class Method:
    def __init__(self, outcomes):
        self.outcomes, self.calls = list(outcomes), 0

    def remote(self, *args, **kwargs):
        self.calls += 1
        return self.outcomes.pop(0)


class Handle:
    def __init__(self, **methods):
        self.__dict__.update(methods)

    def options(self, **_):
        return self


def handles(llm=None, music=None, cover=None) -> RayHandles:
    return RayHandles(llm or Handle(), music or Handle(), cover or Handle())


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("lost", [ActorDiedError(), ActorUnavailableError("unreachable", None)])
def test_a_call_whose_replica_died_is_made_once_more(lost):
    generate = Method([Response(lost), Response("png")])
    assert run(handles(cover=Handle(generate=generate)).cover(None)) == "png"
    assert generate.calls == 2


def test_a_replica_that_dies_twice_fails_the_step():
    meta = Method([Response(ActorDiedError()), Response(ActorDiedError()), Response("never")])
    with pytest.raises(ActorDiedError):
        run(handles(llm=Handle(meta=meta)).meta("d", []))
    assert meta.calls == 2


def test_other_errors_are_not_retried_here():
    tags = Method([Response(RayTaskError("tags", "traceback", ValueError("bad input"))), Response("never")])
    with pytest.raises(RayTaskError):
        run(handles(llm=Handle(tags=tags)).tags("d", False))
    assert tags.calls == 1


async def collect(stream):
    return [item async for item in stream]


def test_a_render_whose_replica_died_before_its_first_take_starts_over():
    first = Stream([("progress", (1, 2))], error=ActorDiedError())
    second = Stream([("progress", (1, 2)), ("progress", (2, 2)), ("result", "take0")])
    gen = Method([first, second])
    items = run(collect(handles(music=Handle(generate_stream=gen)).music(SONG, "song")))
    assert items == [("progress", (1, 2)), ("progress", (1, 2)), ("progress", (2, 2)), ("result", "take0")]
    assert gen.calls == 2


def test_a_render_that_died_after_a_take_came_back_is_not_repeated():
    gen = Method([Stream([("result", "take0")], error=ActorDiedError()), Stream([("result", "again")])])
    with pytest.raises(ActorDiedError):
        run(collect(handles(music=Handle(generate_stream=gen)).music(SONG, "song")))
    assert gen.calls == 1


def test_music_capabilities_are_asked_once_a_minute_and_a_failed_ask_is_not_kept():
    now = [0.0]
    caps = Method([Response(RayTaskError("capabilities", "tb", ValueError("starting"))), Response("caps-1"),
                   Response("caps-2")])
    h = RayHandles(Handle(), Handle(capabilities=caps), Handle(), clock=lambda: now[0])
    with pytest.raises(RayTaskError):
        run(h.music_capabilities())
    assert [run(h.music_capabilities()) for _ in range(3)] == ["caps-1"] * 3  # one ask for many edits
    now[0] += 61.0
    assert run(h.music_capabilities()) == "caps-2" and caps.calls == 3


def Deployment(**methods) -> Handle:  # noqa: N802 - reads like the Handle it makes
    return Handle(ready=Method([]), **methods)


TURBO_TASKS = ["text2music", "cover", "repaint", "extend"]
BASE_TASKS = [*TURBO_TASKS, "extract", "lego", "complete"]


def caps(tasks, *, turbo, model):
    missing = {t: "needs a base (non-turbo) ACE-Step checkpoint" for t in BASE_TASKS if t not in tasks}
    return MusicCapabilities(model=model, is_turbo=turbo, sample_rate=48000, tasks=list(tasks),
                             track_names=[] if turbo else ["vocals", "drums"], unavailable=missing)


def two_music(turbo_caps, base_caps):
    main = Deployment(capabilities=Method([Response(turbo_caps)] * 5),
                  generate_stream=Method([Stream([("result", "from-music")]) for _ in range(5)]))
    base = Deployment(capabilities=Method([Response(base_caps)] * 5),
                  generate_stream=Method([Stream([("result", "from-music-base")]) for _ in range(5)]))
    return RayHandles(Deployment(), main, Deployment(), music_base=base), main, base


def test_with_music_base_the_tasks_turbo_lacks_render_there_and_everything_else_on_music():
    h, main, base = two_music(caps(TURBO_TASKS, turbo=True, model="turbo"), caps(BASE_TASKS, turbo=False, model="base"))
    together = run(h.music_capabilities())
    assert together.tasks == BASE_TASKS and together.unavailable == {}
    assert together.track_names == ["vocals", "drums"] and together.model == "turbo"
    for task, where in [("text2music", "from-music"), ("repaint", "from-music"), ("extract", "from-music-base"),
                        ("lego", "from-music-base")]:
        items = run(collect(h.music(MusicRequest(tags="pop", task=task), "song")))
        assert items == [("result", where)], task
    assert main.capabilities.calls == 1 and base.capabilities.calls == 1  # asked once, then cached
    assert set(h.probes()) == {"llm", "music", "cover", "music_base"}


def test_without_music_base_nothing_changes():
    main = Deployment(capabilities=Method([Response(caps(TURBO_TASKS, turbo=True, model="turbo"))]),
                  generate_stream=Method([Stream([("result", "from-music")])]))
    h = RayHandles(Deployment(), main, Deployment())
    assert run(h.music_capabilities()).unavailable.keys() == {"extract", "lego", "complete"}
    assert run(collect(h.music(MusicRequest(tags="pop", task="extract"), "song"))) == [("result", "from-music")]
    assert main.capabilities.calls == 1 and set(h.probes()) == {"llm", "music", "cover"}
