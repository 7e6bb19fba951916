"""The ingress deployment: CPU-only, holds handles to the model deployments, serves the HTTP API
and runs this replica's job workers and webhook sender."""

from __future__ import annotations

import asyncio
import functools
import os
from dataclasses import dataclass

from ray import serve
from ray.serve.handle import DeploymentHandle

from serve_app.api import Services, create_api
from serve_app.args import JobsArgs, RateLimitArgs
from serve_app.auth import Authenticator, TokenDigests
from serve_app.credentials import DevSecrets, ReplicaSecrets, SecretNames
from serve_app.jobs.keystore import Quotas
from serve_app.jobs.runner import JobRunner, RunnerSettings
from serve_app.jobs.store import JobStore
from serve_app.jobs.urlguard import check_webhook_url
from serve_app.jobs.webhooks import WebhookSender
from serve_app.metrics import song_metrics
from serve_app.songs import MetricsObserver, RayHandles, SongComposer
from serve_app.storage import SignedLinks, StorageArgs, make_store
from serve_app.storage.config import ENV_SIGNING_SECRET

QUEUE_GAUGE_PERIOD_S = 5.0


@dataclass
class IngressConfig:
    """Everything an ingress replica needs; secrets arrive as digests or dev-only generated values."""

    storage: StorageArgs
    dev_secrets: DevSecrets
    tokens: TokenDigests
    song_timeout_s: float
    health_timeout_s: float
    jobs: JobsArgs
    jobs_default_url: str  # the embedded SQLite file; the env var named in `jobs` wins
    max_body_bytes: int
    rate_limit: RateLimitArgs
    max_upload_bytes: int = 100 * 1024 * 1024

    @staticmethod
    def secret_names(jobs: JobsArgs, storage: StorageArgs) -> SecretNames:
        return SecretNames(webhook=jobs.webhook_secret_env,
                           storage=ENV_SIGNING_SECRET if storage.backend == "local" else None)


def database_url(jobs: JobsArgs, default_url: str) -> str:
    """The job database: the env var named in `jobs` wins over the embedded SQLite file."""
    return os.environ.get(jobs.database_url_env) or default_url


def job_store(jobs: JobsArgs, default_url: str) -> JobStore:
    return JobStore(
        database_url(jobs, default_url),
        lease_s=jobs.lease_s,
        max_queued=jobs.max_queued,
        max_queued_per_owner=jobs.queue_share(),
        quotas=Quotas.from_args(jobs.quotas),
        max_attempts=jobs.max_attempts,
        webhook_max_attempts=jobs.webhook_max_attempts,
        webhook_backoff_base_s=jobs.webhook_backoff_base_s,
    )


def runner_settings(jobs: JobsArgs) -> RunnerSettings:
    return RunnerSettings(concurrency=jobs.concurrency, poll_interval_s=jobs.poll_interval_s,
                          heartbeat_s=jobs.heartbeat_s, drain_timeout_s=jobs.drain_timeout_s,
                          retry_base_s=jobs.retry_base_s)


@serve.deployment(name="Ingress", max_ongoing_requests=256)
@serve.ingress()
class Ingress:
    async def __init__(
        self, llm: DeploymentHandle, music: DeploymentHandle, cover: DeploymentHandle, config: IngressConfig,
        music_base: DeploymentHandle | None = None,
    ):
        secrets = ReplicaSecrets.resolve(IngressConfig.secret_names(config.jobs, config.storage), config.dev_secrets)
        self.store = make_store(config.storage, signing_secret=secrets.storage)
        self.jobs = job_store(config.jobs, config.jobs_default_url)
        models = RayHandles(llm, music, cover, music_base=music_base)
        composer = SongComposer(models, self.store, key_prefix=config.storage.key_prefix,
                                observers=(MetricsObserver(),))
        self.runner = JobRunner(self.jobs, composer, runner_settings(config.jobs))
        url_guard = functools.partial(check_webhook_url, allow_private=config.jobs.allow_private_webhooks)
        self.webhooks = WebhookSender(self.jobs.webhooks, secrets.webhook, self.runner.worker_id, url_guard=url_guard)
        self.services = Services(
            store=self.store,
            jobs=self.jobs,
            runner=self.runner,
            webhooks=self.webhooks,
            tokens=config.tokens,
            probes={**models.probes(), "storage": self._storage_ready, "jobs": self._jobs_ready},
            url_guard=url_guard,
            url_ttl_s=config.storage.url_ttl_s,
            song_timeout_s=config.song_timeout_s,
            health_timeout_s=config.health_timeout_s,
            max_body_bytes=config.max_body_bytes,
            rate_limit=config.rate_limit,
            links=self.store if isinstance(self.store, SignedLinks) else None,
            music_capabilities=models.music_capabilities,
            max_upload_bytes=config.max_upload_bytes,
            key_prefix=config.storage.key_prefix,
            auth=Authenticator(config.tokens, self.jobs.keys, ttl_s=config.jobs.keys.cache_ttl_s,
                               touch_interval_s=config.jobs.keys.touch_interval_s),
        )
        self.runner.start()
        self.webhooks.start()
        self._gauges = asyncio.get_running_loop().create_task(self._report_queue_depth())

    async def _storage_ready(self) -> str:
        await self.store.check()
        return self.store.backend_name

    async def _jobs_ready(self) -> str:
        counts = await asyncio.to_thread(self.jobs.counts)
        return f"queued={counts.get('queued', 0)} running={counts.get('running', 0)}"

    async def _report_queue_depth(self) -> None:
        metrics = song_metrics()
        while True:
            try:
                counts = await asyncio.to_thread(self.jobs.counts)
                metrics.queue_depth.set(counts.get("queued", 0))
            except Exception:  # noqa: BLE001 - a metric must never take the replica down
                pass
            await asyncio.sleep(QUEUE_GAUGE_PERIOD_S)

    def __serve_build_asgi_app__(self):
        return create_api(self.services)

    async def __del__(self):
        """Graceful shutdown (rolling redeploy, downscale): hand running songs back, don't drop them."""
        self._gauges.cancel()
        await self.runner.drain()
        await self.webhooks.stop()
