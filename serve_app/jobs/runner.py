"""Job workers inside each ingress replica: claim queued jobs, compose them, keep their leases.

Every ingress replica runs one `JobRunner`. Jobs live in the shared job store, so a job whose
replica dies is claimed again by any replica once its lease expires; it reuses the job id as the
song id (same storage keys) and a seed derived from the job id, so a resumed song overwrites the
same objects with the same audio instead of storing a second set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from dataclasses import dataclass, field
from enum import Enum

from serve_app.redact import redact
from serve_app.songs import SongComposer, SongFailed, SongObserver, SongTask
from serve_app.vocabulary import MAX_SEED

from .errors import StoreUnavailable
from .records import Job, Lease
from .store import JobStore

logger = logging.getLogger("ray.serve")

MAX_RETRY_DELAY_S = 30.0
DELETED_BY_OWNER = "deleted by its owner"
CANCELLED_BY_CLIENT = "cancelled by the client"


def job_seed(job: Job) -> int:
    """A fixed seed per job when the caller asked for a random one, so retries reproduce the song."""
    seed = job.request.get("seed", -1)
    return int(seed) if seed is not None and seed >= 0 else int(job.id[:8], 16) % MAX_SEED


def job_task(job: Job) -> SongTask:
    return SongTask.from_request(job.mode, job.request).with_seed(job_seed(job))


@dataclass
class RunnerSettings:
    concurrency: int = 4
    poll_interval_s: float = 0.5
    heartbeat_s: float = 1.0
    drain_timeout_s: float = 10.0
    retry_base_s: float = 2.0


class StopReason(Enum):
    """Why a running job's task was cancelled: each ends differently."""

    CANCEL = "cancel"  # the client asked: clean up, record `cancelled`
    SHUTDOWN = "shutdown"  # this replica is stopping: hand the job back to the queue
    LOST = "lost"  # another worker owns the job now: write nothing


@dataclass
class Run:
    """One job running on this replica."""

    job: Job
    task: asyncio.Task | None = None
    stop: StopReason | None = None
    heartbeat: asyncio.Task | None = field(default=None, repr=False)

    def halt(self, reason: StopReason) -> None:
        """Cancel the job's task once: the first reason is the one that counts, and a job already
        stopping is left to finish its clean-up (a second cancel would interrupt it)."""
        if self.stop is None:
            self.stop = reason
            if self.task is not None:
                self.task.cancel()


class _StoreObserver(SongObserver):
    """Persists stage and progress; a lost lease stops the song (another worker owns it now)."""

    def __init__(self, runner: JobRunner, job_id: str):
        self.runner, self.job_id = runner, job_id

    async def stage(self, name: str) -> None:
        await self.runner._write(self.runner.store.set_stage, self.job_id, name)

    async def progress(self, step: int, total: int) -> None:
        await self.runner._write(self.runner.store.set_progress, self.job_id, step, total)


class JobRunner:
    def __init__(self, store: JobStore, composer: SongComposer, settings: RunnerSettings, *, worker_id: str = ""):
        self.store, self.composer, self.settings = store, composer, settings
        # The pid lets operators (and the fault tests) tie a lease to an OS process.
        self.worker_id = worker_id or f"ingress-{os.getpid()}-{secrets.token_hex(4)}"
        self._runs: dict[str, Run] = {}
        self._waiters: dict[str, asyncio.Event] = {}  # set when a job ends here (the seed's sync calls wait)
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task | None = None

    # -- lifecycle --

    def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self._claim_loop())

    def wake(self) -> None:
        """A job was just queued here: claim it now instead of at the next poll."""
        self._wake.set()

    async def drain(self) -> None:
        """Graceful shutdown: stop claiming, let running songs finish briefly, hand the rest back."""
        self._stopping = True
        self._wake.set()
        if self._runs:
            await asyncio.wait(self._tasks(), timeout=self.settings.drain_timeout_s)
        for run in list(self._runs.values()):
            run.halt(StopReason.SHUTDOWN)
        if self._runs:
            await asyncio.wait(self._tasks(), timeout=10)
        if self._loop_task:
            self._loop_task.cancel()

    @property
    def running(self) -> list[str]:
        return list(self._runs)

    def _tasks(self) -> list[asyncio.Task]:
        return [r.task for r in self._runs.values() if r.task is not None]

    # -- waiting for a job (the seed's synchronous endpoints) --

    async def wait(self, job_id: str, timeout_s: float) -> Job:
        """Until the job is terminal: woken at once when it ran here, else by polling the store."""
        event = self._waiters.setdefault(job_id, asyncio.Event())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            while True:
                job = await asyncio.to_thread(self.store.get, job_id)
                if job is None or job.terminal:
                    return job
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise asyncio.TimeoutError
                try:
                    await asyncio.wait_for(event.wait(), timeout=min(self.settings.poll_interval_s, remaining))
                except asyncio.TimeoutError:
                    pass
        finally:
            if job_id not in self._runs:
                self._waiters.pop(job_id, None)

    def cancel_local(self, job_id: str) -> bool:
        """Stop a job running on this replica at once (the store already records the request)."""
        run = self._runs.get(job_id)
        if run is None:
            return False
        run.halt(StopReason.CANCEL)
        return True

    # -- internals --

    async def _claim_loop(self) -> None:
        while not self._stopping:
            try:
                if len(self._runs) < self.settings.concurrency:
                    ended: list[str] = []
                    job = await asyncio.to_thread(self.store.claim, self.worker_id, ended.append)
                    for job_id in ended:  # cancelled or abandoned at the claim: their partial objects
                        await self.composer.remove_partial(job_id)
                    if job is not None:
                        run = self._runs[job.id] = Run(job)
                        run.task = asyncio.get_running_loop().create_task(self._run(run))
                        continue
            except StoreUnavailable as exc:
                logger.warning("job store unavailable, will retry: %s", redact(str(exc)))
            except Exception:  # noqa: BLE001 - the loop must survive anything
                logger.exception("job claim loop error")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.poll_interval_s)
            except asyncio.TimeoutError:
                pass

    async def _run(self, run: Run) -> None:
        job = run.job
        run.heartbeat = asyncio.get_running_loop().create_task(self._heartbeat(run))
        extra = {"job_id": job.id}
        logger.info("job %s started (attempt %d)", job.id, job.attempts, extra=extra)
        try:
            result = await self.composer.compose(job_task(job), song_id=job.id, observer=_StoreObserver(self, job.id))
            if await asyncio.to_thread(self.store.is_deleted, job.id):
                # Deleted while its last step ran (too late to stop): its objects go too.
                await self.composer.remove_partial(job.id)
                await self._finish(job.id, status="cancelled", error=DELETED_BY_OWNER)
            else:
                await self._finish(job.id, status="succeeded", result=result.to_dict())
        except asyncio.CancelledError:
            reason = run.stop or StopReason.SHUTDOWN
            if reason is StopReason.CANCEL:
                await self.composer.remove_partial(job.id)
                await self._finish(job.id, status="cancelled", error=CANCELLED_BY_CLIENT)
            elif reason is StopReason.SHUTDOWN:
                await asyncio.to_thread(self.store.release, job.id, self.worker_id)
                logger.info("job %s handed back to the queue (replica stopping)", job.id, extra=extra)
            # LOST: another worker owns the job now; write nothing.
        except SongFailed as exc:
            if exc.retryable and job.attempts < self.store.max_attempts:
                await self._retry_later(run, exc)
            else:
                await self._finish(job.id, status="failed", error=redact(str(exc)))
        except Exception as exc:  # noqa: BLE001
            logger.exception("job %s crashed", job.id, extra=extra)
            await self._finish(job.id, status="failed", error=f"internal error: {type(exc).__name__}")
        finally:
            run.heartbeat.cancel()
            self._runs.pop(job.id, None)
            if (event := self._waiters.get(job.id)) is not None:
                event.set()
            self.wake()

    async def _retry_later(self, run: Run, exc: SongFailed) -> None:
        """Back off (holding the lease), then queue the job again; its attempt counts."""
        job = run.job
        delay = min(MAX_RETRY_DELAY_S, self.settings.retry_base_s * 2 ** (job.attempts - 1))
        logger.warning("job %s: %s; retry %d in %.1fs", job.id, redact(str(exc)), job.attempts + 1, delay,
                       extra={"job_id": job.id})
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            if run.stop is StopReason.CANCEL:
                await self._finish(job.id, status="cancelled", error=CANCELLED_BY_CLIENT)
                return
            if run.stop is StopReason.LOST:
                return
        await asyncio.to_thread(self.store.release_for_retry, job.id, self.worker_id, redact(str(exc)))

    async def _finish(self, job_id: str, **kw) -> None:
        for attempt in range(5):
            try:
                await asyncio.to_thread(self.store.finish, job_id, self.worker_id, **kw)
                return
            except StoreUnavailable:
                await asyncio.sleep(0.5 * 2**attempt)
        logger.error("job %s: could not record its end; its lease will expire and it will be retried", job_id)

    async def _write(self, method, job_id: str, *args) -> None:
        try:
            held = await asyncio.to_thread(method, job_id, self.worker_id, *args)
        except StoreUnavailable:
            return  # progress is best effort; the heartbeat decides whether we still own the job
        if not held and (run := self._runs.get(job_id)) is not None:
            run.halt(StopReason.LOST)

    async def _heartbeat(self, run: Run) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                lease = await asyncio.to_thread(self.store.heartbeat, run.job.id, self.worker_id)
            except StoreUnavailable:
                continue
            if lease is Lease.CANCEL_REQUESTED:
                run.halt(StopReason.CANCEL)
                return
            if lease is Lease.LOST:
                run.halt(StopReason.LOST)
                return
