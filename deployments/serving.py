"""Serve-side plumbing shared by the three deployments: engine threads, idle trimming, progress.

Engines block (a generate() call holds its thread for seconds); a replica's event loop must not,
or it stops streaming progress, noticing cancellations and answering health checks. So every
engine call runs on the replica's `Worker` pool, and the worker counts the replica's requests in
flight so freed memory goes back to the OS when the last one ends (deployments/memory.py).
No Ray and no torch here: it is plain asyncio, testable with a fake engine.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from deployments.memory import IdleTrimmer

T = TypeVar("T")
R = TypeVar("R")


class Worker:
    """A replica's engine thread pool (`threads` calls side by side) and its IdleTrimmer."""

    def __init__(self, name: str, threads: int = 1) -> None:
        self.name = name
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
        self.idle = IdleTrimmer()

    def request(self) -> AbstractContextManager[None]:
        """Wrap one whole request, waiting included (for the pool, or for its @serve.batch to fill):
        a replica is idle, and trims, only when no request is waiting or running."""
        return self.idle.request()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the pool, awaited without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def stream(
        self, fn: Callable[..., T], *args: Any, cancel: threading.Event | None = None
    ) -> AsyncIterator[tuple[str, Any]]:
        """Run `fn(*args, progress, cancel)` on the pool; yield ("progress", (step, total)) for each
        progress call, in order, then ("result", its return value) (or raise what it raised).

        Closing or cancelling the generator (Serve does when the caller goes away) sets `cancel`, so
        the engine stops at its next step and the pool is free for the next request.
        """
        cancel = cancel if cancel is not None else threading.Event()
        loop = asyncio.get_running_loop()
        updates: asyncio.Queue[tuple[int, int]] = asyncio.Queue()

        def progress(step: int, total: int) -> None:  # a ProgressFn, called on the pool's thread
            loop.call_soon_threadsafe(updates.put_nowait, (step, total))

        work = loop.run_in_executor(self.pool, fn, *args, progress, cancel)
        try:
            while not work.done():
                getter = asyncio.ensure_future(updates.get())
                done, _ = await asyncio.wait({getter, work}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield "progress", getter.result()
                else:
                    getter.cancel()
            while not updates.empty():  # steps reported just before the result
                yield "progress", updates.get_nowait()
            yield "result", work.result()
        except (asyncio.CancelledError, GeneratorExit):
            cancel.set()
            raise
        finally:
            if not work.done():
                cancel.set()

    def check_health(self) -> None:
        if self.pool._shutdown:
            raise RuntimeError(f"{self.name} worker pool is shut down")


class Batcher:
    """Gathers concurrent calls into one: `await batcher.submit(item)` returns `fn(items)[i]`.

    A batch runs when it holds `max_batch_size` items or `wait_s` after its first item; one batch
    at a time (the engine holds one thread). It belongs to its deployment instance and its event
    loop, not to the class (unlike @serve.batch, whose queue is shared by a process's instances and
    needs a replica context), so the same deployment class runs in a replica, in a benchmark's
    process or in a test.
    """

    def __init__(self, fn: Callable[[list[T]], Any], max_batch_size: int, wait_s: float) -> None:
        self.fn, self.max_batch_size, self.wait_s = fn, max(1, int(max_batch_size)), float(wait_s)
        self._pending: list[tuple[T, asyncio.Future]] = []
        self._full: asyncio.Event | None = None
        self._runner: asyncio.Task | None = None

    async def submit(self, item: T) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self.max_batch_size and self._full is not None:
            self._full.set()
        if self._runner is None or self._runner.done():
            self._runner = asyncio.ensure_future(self._run())
        return await future

    async def _run(self) -> None:
        """The one task that drains the queue; started by the first call after an idle spell."""
        while self._pending:
            self._full = asyncio.Event()
            if len(self._pending) < self.max_batch_size:
                try:
                    await asyncio.wait_for(self._full.wait(), timeout=self.wait_s)
                except asyncio.TimeoutError:
                    pass
            batch, self._pending = self._pending[: self.max_batch_size], self._pending[self.max_batch_size:]
            batch = [(item, fut) for item, fut in batch if not fut.done()]  # callers that gave up
            if not batch:
                continue
            try:
                results = list(await self.fn([item for item, _ in batch]))
                if len(results) != len(batch):
                    raise RuntimeError(f"a batch of {len(batch)} got {len(results)} results")
            except Exception as exc:  # noqa: BLE001 - every caller in the batch gets the error
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(batch, results):
                if not fut.done():
                    fut.set_result(result)
