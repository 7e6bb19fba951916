"""Fakes for the fast tier: model handles and an object store that live in the test's own loop.

`FakeModels` has the composer's five calls (serve_app.songs.handles.ModelHandles) and answers with
the real result dataclasses; `InMemoryStore` is an ObjectStore over a dict. Both record what
happened to them and can be told to wait or fail at any step, so a test can hold a song at a
chosen point, then cancel it, lose its lease or break its storage.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from deployments.audio_codec import CODECS
from deployments.protocol import (
    BASE_ONLY_TASKS,
    EDIT_TASKS,
    TRACK_NAMES,
    CoverRequest,
    CoverResult,
    MusicCapabilities,
    MusicRequest,
    MusicResult,
    Written,
    resolve_seed,
    take_seed,
)
from serve_app.storage import ObjectInfo, ObjectNotFound, ObjectStore

SAMPLE_RATE = 48_000
STEPS = 4


@dataclass
class Gate:
    """Holds a step until released: `reached` is set when the step waits, `release()` lets it go."""

    reached: asyncio.Event = field(default_factory=asyncio.Event)
    opened: asyncio.Event = field(default_factory=asyncio.Event)

    async def pass_through(self) -> None:
        self.reached.set()
        await self.opened.wait()

    def release(self) -> None:
        self.opened.set()


class FakeModels:
    """Answers like the deployments, instantly (or as slowly as a test asks)."""

    def __init__(self, *, steps: int = STEPS, delay_s: float = 0.0):
        self.steps, self.delay_s = steps, delay_s
        self.calls: list[str] = []  # in the order they started
        self.cancelled: list[str] = []  # calls whose waiter was cancelled (the replica would be told)
        self.gates: dict[str, Gate] = {}  # call name (or "music:<step>") -> gate
        self.failures: dict[str, BaseException] = {}  # call name -> what it raises, every time
        self.fail_next: dict[str, list[BaseException]] = {}  # call name -> what its next calls raise, once each
        self.music_requests: list[MusicRequest] = []
        self.seeds: dict[str, int | None] = {}  # the seed each LLM call was given
        self.ready_error: BaseException | None = None
        self.base_model = False  # True: a non-turbo checkpoint (extract, lego, complete allowed)

    def gate(self, name: str) -> Gate:
        return self.gates.setdefault(name, Gate())

    async def _step(self, name: str) -> float:
        started = time.time()
        self.calls.append(name)
        try:
            if name in self.gates:
                await self.gates[name].pass_through()
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled.append(name)
            raise
        if self.fail_next.get(name):
            raise self.fail_next[name].pop(0)
        if name in self.failures:
            raise self.failures[name]
        return started

    async def tags(self, description: str, instrumental: bool, seed: int | None = None) -> Written:
        self.seeds["tags"] = seed
        t0 = await self._step("tags")
        tags = ["synthwave", "upbeat"] + ([] if instrumental else ["vocals"])
        return Written("tags", tags=tags, raw=", ".join(tags), model="fake-llm", started_at=t0, finished_at=time.time())

    async def lyrics(self, subject: str, seed: int | None = None) -> Written:
        self.seeds["lyrics"] = seed
        t0 = await self._step("lyrics")
        text = f"[verse]\nwords about {subject[:40]}\n[chorus]\nla la la"
        return Written("lyrics", lyrics=text, raw=text, model="fake-llm", started_at=t0, finished_at=time.time())

    async def meta(self, description: str, tags: list[str], seed: int | None = None) -> Written:
        self.seeds["meta"] = seed
        t0 = await self._step("meta")
        return Written("meta", title="Fake Title", categories=["Pop", "Electronic", "Test"], raw="Fake Title",
                       model="fake-llm", started_at=t0, finished_at=time.time())

    async def cover(self, req: CoverRequest) -> CoverResult:
        t0 = await self._step("cover")
        return CoverResult(png=b"\x89PNG fake " + req.prompt.encode()[:32], width=512, height=512,
                           seed=resolve_seed(req.seed), steps=1, prompt=req.prompt, model="fake-cover",
                           started_at=t0, finished_at=time.time(), model_s=0.0)

    async def music(self, req: MusicRequest, song_id: str):
        self.music_requests.append(req)
        t0 = await self._step("music")
        try:
            for step in range(1, self.steps + 1):
                gate = self.gates.get(f"music:{step}")
                if gate is not None:
                    await gate.pass_through()
                yield "progress", (step, self.steps)
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled.append("music")
            raise
        if "music:result" in self.failures:
            raise self.failures["music:result"]
        n = int(round(req.duration_s * SAMPLE_RATE))
        codec = CODECS[req.audio_format]
        seed = resolve_seed(req.seed)
        for k in range(req.takes):
            yield "result", MusicResult(
                audio=b"RIFF" + bytes(16) + bytes([k]), audio_format=req.audio_format, extension=codec.extension,
                content_type=codec.content_type, sample_rate=SAMPLE_RATE, channels=2, num_samples=n,
                duration_s=n / SAMPLE_RATE, seed=take_seed(seed, k), steps=req.steps or 8,
                guidance_scale=req.guidance_scale or 1.0, model="fake-music", started_at=t0, finished_at=time.time(),
                take=k, task=req.task,
            )

    async def music_capabilities(self) -> MusicCapabilities:
        tasks = ["text2music", *(t for t in EDIT_TASKS if self.base_model or t not in BASE_ONLY_TASKS)]
        return MusicCapabilities(model="fake-music", is_turbo=not self.base_model, sample_rate=SAMPLE_RATE,
                                 tasks=tasks, track_names=list(TRACK_NAMES))

    def probes(self) -> dict[str, Any]:
        async def ready() -> str:
            if self.ready_error is not None:
                raise self.ready_error
            return "fake on cpu"

        return {"llm": ready, "music": ready, "cover": ready}


class InMemoryStore(ObjectStore):
    """An ObjectStore over a dict, with S3's semantics (overwrite, idempotent delete, prefix lists)."""

    backend_name = "memory"

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.fail_puts: BaseException | None = None  # raised by every put while set
        self.puts: defaultdict[str, int] = defaultdict(int)
        self.unreachable: BaseException | None = None

    async def put(self, key, data, content_type, metadata=None) -> None:
        data, _ = self._checked_put(key, data, content_type, metadata)
        if self.fail_puts is not None:
            raise self.fail_puts
        self.puts[key] += 1
        self.objects[key] = (data, content_type)

    async def get(self, key) -> bytes:
        if key not in self.objects:
            raise ObjectNotFound(f"object not found: {key!r}")
        return self.objects[key][0]

    async def exists(self, key) -> bool:
        return key in self.objects

    async def head(self, key) -> ObjectInfo:
        data, ctype = self.objects.get(key) or (None, None)
        if data is None:
            raise ObjectNotFound(f"object not found: {key!r}")
        return ObjectInfo(key=key, size=len(data), content_type=ctype)

    async def delete(self, key) -> None:
        self.objects.pop(key, None)

    async def delete_prefix(self, prefix) -> int:
        if not prefix:
            raise ValueError("prefix must not be empty")
        keys = [k for k in self.objects if k.startswith(prefix)]
        for k in keys:
            del self.objects[k]
        return len(keys)

    async def list(self, prefix="") -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix))

    def signed_url(self, key, ttl_s=None) -> str:
        return f"https://storage.example/{key}?ttl={ttl_s}"

    async def check(self) -> None:
        if self.unreachable is not None:
            raise self.unreachable


# -- a whole ingress replica's services, over the fakes --

API_TOKEN = "fast-tier-token-" + "a" * 24
OTHER_TOKEN = "fast-tier-token-" + "b" * 24


@dataclass
class FakeStack:
    """What `fake_services` built: the Services the routes get, and the fakes behind them."""

    services: Any
    models: FakeModels
    store: ObjectStore
    jobs: Any
    runner: Any
    composer: Any


def fake_services(db_path, *, store: ObjectStore | None = None, models: FakeModels | None = None,
                  concurrency: int = 4, max_queued: int = 100, song_timeout_s: float = 30.0,
                  rate_limit=None, links=None, max_attempts: int = 3, clock=None,
                  heartbeat_s: float = 0.05, lease_s: float = 15.0, allow_private_webhooks: bool = True,
                  max_upload_bytes: int = 8 * 1024 * 1024, max_queued_per_owner: int | None = None,
                  quotas=None, key_cache_ttl_s: float = 3.0, auth_clock=None, database_url: str | None = None
                  ) -> FakeStack:
    """The production wiring (serve_app.ingress) with fake models and storage and a real SQLite
    job store. Call `start()` on the runner inside the test's event loop to run songs.

    `quotas` (a keystore.Quotas) are API keys' defaults (None: unlimited); `auth_clock` is the
    key cache's monotonic clock; `database_url` puts the job store elsewhere (PostgreSQL)."""
    import functools

    from serve_app.api import Services
    from serve_app.auth import Authenticator, TokenDigests, digest
    from serve_app.jobs.runner import JobRunner, RunnerSettings
    from serve_app.jobs.store import JobStore
    from serve_app.jobs.urlguard import check_webhook_url
    from serve_app.jobs.webhooks import WebhookSender
    from serve_app.songs import SongComposer

    models = models or FakeModels()
    store = store if store is not None else InMemoryStore()
    jobs = JobStore(database_url or f"sqlite:///{db_path}", max_queued=max_queued, max_attempts=max_attempts,
                    clock=clock, lease_s=lease_s, max_queued_per_owner=max_queued_per_owner, quotas=quotas)
    tokens = TokenDigests((digest(API_TOKEN), digest(OTHER_TOKEN)))
    auth = Authenticator(tokens, jobs.keys, ttl_s=key_cache_ttl_s,
                         **({"clock": auth_clock} if auth_clock is not None else {}))
    composer = SongComposer(models, store, key_prefix="songs")
    runner = JobRunner(jobs, composer, RunnerSettings(concurrency=concurrency, poll_interval_s=0.02,
                                                      heartbeat_s=heartbeat_s, drain_timeout_s=0.5,
                                                      retry_base_s=0.0))
    guard = functools.partial(check_webhook_url, allow_private=allow_private_webhooks)
    webhooks = WebhookSender(jobs.webhooks, b"w" * 32, runner.worker_id, url_guard=guard, poll_s=0.05)

    async def jobs_ready() -> str:
        counts = jobs.counts()
        return f"queued={counts['queued']} running={counts['running']}"

    async def storage_ready() -> str:
        await store.check()
        return store.backend_name

    services = Services(
        store=store, jobs=jobs, runner=runner, webhooks=webhooks,
        tokens=tokens,
        probes={**models.probes(), "storage": storage_ready, "jobs": jobs_ready},
        url_guard=guard, url_ttl_s=600, song_timeout_s=song_timeout_s, health_timeout_s=2.0,
        max_body_bytes=64 * 1024, rate_limit=rate_limit, links=links,
        music_capabilities=models.music_capabilities, max_upload_bytes=max_upload_bytes, auth=auth,
    )
    return FakeStack(services, models, store, jobs, runner, composer)
