"""The composer's view of the three models: five calls, whatever runs them.

`RayHandles` calls the Serve deployments through their handles (production, dev). `LocalHandles`
calls the same deployment classes in this process, without Ray (benchmarks). Tests pass fakes
with the same five methods. Cancelling a call cancels the model's work too, not just the wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from deployments.protocol import CoverRequest, CoverResult, MusicCapabilities, MusicRequest, Written

Probe = Callable[[], Awaitable[Any]]


class ModelHandles(Protocol):
    """`seed`: the song's seed; the LLM samples each product from a seed derived from it, so the
    same song seed writes the same words and another seed other words (None: greedy)."""

    async def tags(self, description: str, instrumental: bool, seed: int | None = None) -> Written: ...

    async def lyrics(self, subject: str, seed: int | None = None) -> Written: ...

    async def meta(self, description: str, tags: list[str], seed: int | None = None) -> Written: ...

    async def cover(self, req: CoverRequest) -> CoverResult: ...

    def music(self, req: MusicRequest, song_id: str) -> AsyncIterator[tuple[str, Any]]:
        """("progress", (step, total)) after every diffusion step, then ("result", MusicResult)
        once per take, in take order."""
        ...

    async def music_capabilities(self) -> MusicCapabilities:
        """What the music model can do (the API checks an edit against it before queueing)."""
        ...

    def probes(self) -> dict[str, Probe]:
        """Readiness checks by deployment name (the health endpoint's)."""
        ...


async def _cancelling(response) -> Any:
    """Await a DeploymentResponse; when the waiter is cancelled, tell the replica too."""
    try:
        return await response
    except asyncio.CancelledError:
        response.cancel()
        raise


# A call whose replica died is made once more, in the same song attempt. Serve's router drops a
# replica from its rotation when a call to it fails with ActorDiedError, so the second call goes
# to a live replica or waits for Serve's replacement. Without it the song loses its attempt, and
# its retry, claimed by another ingress replica whose router has not heard of the death yet, can
# lose the next attempt to the same dead replica (seen in the chaos test: one Cover kill, two
# attempts): with three ingress replicas one replica crash could use up jobs.max_attempts.
REPLICA_LOST_RETRIES = 1


def replica_lost(exc: BaseException) -> bool:
    """The replica the call went to died (or cannot be reached): worth one more call."""
    from ray.exceptions import ActorDiedError, ActorUnavailableError

    return isinstance(exc, ActorDiedError | ActorUnavailableError)


async def _surviving(call: Callable[[], Any]) -> Any:
    """`await call()` (a DeploymentResponse), made again when its replica died (see above)."""
    for tries_left in range(REPLICA_LOST_RETRIES, -1, -1):
        try:
            return await _cancelling(call())
        except Exception as exc:  # noqa: BLE001 - re-raised unless the replica died
            if tries_left == 0 or not replica_lost(exc):
                raise


CAPABILITIES_TTL_S = 60.0  # what a music checkpoint can do changes only with a redeploy


def merged_capabilities(main: MusicCapabilities, base: MusicCapabilities) -> MusicCapabilities:
    """What `music` and `music_base` can do together: every task of either (music's first, as
    routed), stems from whichever offers them; `unavailable` only for what neither runs."""
    tasks = [*main.tasks, *(t for t in base.tasks if t not in main.tasks)]
    return MusicCapabilities(
        model=main.model, is_turbo=main.is_turbo, sample_rate=main.sample_rate, tasks=tasks,
        track_names=list(main.track_names or base.track_names), max_takes=min(main.max_takes, base.max_takes),
        unavailable={t: why for t, why in {**base.unavailable, **main.unavailable}.items() if t not in tasks},
    )


class _Capabilities:
    """One deployment's capabilities, asked of a replica at most every CAPABILITIES_TTL_S (a
    failed ask is not remembered; a dead replica's ask is made once more)."""

    def __init__(self, handle, clock: Callable[[], float]):
        self.handle, self.clock = handle, clock
        self._cached: tuple[float, MusicCapabilities] | None = None  # (expires, value)

    async def get(self) -> MusicCapabilities:
        if self._cached is not None and self._cached[0] > self.clock():
            return self._cached[1]
        caps = await _surviving(lambda: self.handle.capabilities.remote())
        self._cached = (self.clock() + CAPABILITIES_TTL_S, caps)
        return caps


class RayHandles:
    """`music_base` (optional): a second music deployment, a base checkpoint, that renders the
    tasks `music` cannot (extract, lego, complete beside a turbo `music`)."""

    def __init__(self, llm, music, cover, *, music_base=None, clock: Callable[[], float] = time.monotonic):
        self.llm, self.music_handle, self.cover_handle = llm, music, cover
        self.music_base_handle = music_base
        self._streams = {"music": music.options(stream=True)}
        if music_base is not None:
            self._streams["music_base"] = music_base.options(stream=True)
        self._caps = _Capabilities(music, clock)
        self._base_caps = _Capabilities(music_base, clock) if music_base is not None else None

    async def tags(self, description: str, instrumental: bool, seed: int | None = None) -> Written:
        return await _surviving(lambda: self.llm.tags.remote(description, instrumental, seed=seed))

    async def lyrics(self, subject: str, seed: int | None = None) -> Written:
        return await _surviving(lambda: self.llm.lyrics.remote(subject, seed=seed))

    async def meta(self, description: str, tags: list[str], seed: int | None = None) -> Written:
        return await _surviving(lambda: self.llm.meta.remote(description, tags, seed=seed))

    async def cover(self, req: CoverRequest) -> CoverResult:
        return await _surviving(lambda: self.cover_handle.generate.remote(req))

    async def music_for(self, task: str) -> str:
        """The deployment that renders `task`: "music", unless only "music_base" can."""
        if self._base_caps is None or task == "text2music" or task in (await self._caps.get()).tasks:
            return "music"
        return "music_base" if task in (await self._base_caps.get()).tasks else "music"

    async def music(self, req: MusicRequest, song_id: str) -> AsyncIterator[tuple[str, Any]]:
        """The render's stream; rendered again from the start when its replica dies before the
        first take came back (progress then starts over), like the other calls (see above)."""
        handle = self._streams[await self.music_for(req.task)]
        for tries_left in range(REPLICA_LOST_RETRIES, -1, -1):
            stream = handle.generate_stream.remote(req, song_id)
            results = 0
            try:
                async for item in stream:
                    results += item[0] == "result"
                    yield item
                return
            except (asyncio.CancelledError, GeneratorExit):
                stream.cancel()  # the replica stops the render at its next step
                raise
            except Exception as exc:  # noqa: BLE001 - re-raised unless the replica died first
                if tries_left == 0 or results or not replica_lost(exc):
                    raise

    async def music_capabilities(self) -> MusicCapabilities:
        """What the music deployments can do together (every POST /v1/edits checks it)."""
        caps = await self._caps.get()
        if self._base_caps is None:
            return caps
        return merged_capabilities(caps, await self._base_caps.get())

    def probes(self) -> dict[str, Probe]:
        probes = {"llm": self.llm.ready.remote, "music": self.music_handle.ready.remote,
                  "cover": self.cover_handle.ready.remote}
        if self.music_base_handle is not None:
            probes["music_base"] = self.music_base_handle.ready.remote
        return probes


class LocalHandles:
    """The deployments' own classes, run in this process: the same code a replica runs, minus Ray."""

    def __init__(self, llm, music, cover):
        self.llm, self.music_server, self.cover_server = llm, music, cover

    async def tags(self, description: str, instrumental: bool, seed: int | None = None) -> Written:
        return await self.llm.tags(description, instrumental, seed=seed)

    async def lyrics(self, subject: str, seed: int | None = None) -> Written:
        return await self.llm.lyrics(subject, seed=seed)

    async def meta(self, description: str, tags: list[str], seed: int | None = None) -> Written:
        return await self.llm.meta(description, tags, seed=seed)

    async def cover(self, req: CoverRequest) -> CoverResult:
        return await self.cover_server.generate(req)

    def music(self, req: MusicRequest, song_id: str) -> AsyncIterator[tuple[str, Any]]:
        return self.music_server.generate_stream(req, song_id)

    async def music_capabilities(self) -> MusicCapabilities:
        return await self.music_server.capabilities()

    def probes(self) -> dict[str, Probe]:
        return {"llm": self.llm.ready, "music": self.music_server.ready, "cover": self.cover_server.ready}
