"""RayHandles over fake deployment handles: a call whose replica died is made once more in the
same song attempt (Serve's router has dropped that replica by then); other errors are not."""

from __future__ import annotations

import asyncio

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError

from serve_app.songs.handles import RayHandles


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
    items = run(collect(handles(music=Handle(generate_stream=gen)).music(None, "song")))
    assert items == [("progress", (1, 2)), ("progress", (1, 2)), ("progress", (2, 2)), ("result", "take0")]
    assert gen.calls == 2


def test_a_render_that_died_after_a_take_came_back_is_not_repeated():
    gen = Method([Stream([("result", "take0")], error=ActorDiedError()), Stream([("result", "again")])])
    with pytest.raises(ActorDiedError):
        run(collect(handles(music=Handle(generate_stream=gen)).music(None, "song")))
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
