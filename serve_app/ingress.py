"""The ingress deployment: CPU-only, holds handles to the model deployments, serves the HTTP API
and runs this replica's job workers and webhook sender."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass

from ray import serve
from ray.serve.handle import DeploymentHandle

from serve_app.api import Services, create_api
from serve_app.args import JobsArgs, RateLimitArgs
from serve_app.auth import TokenDigests
from serve_app.composer import SongComposer
from serve_app.jobs import JobStore
from serve_app.metrics import song_metrics
from serve_app.runner import JobRunner, RunnerSettings
from serve_app.storage import StorageArgs, make_store
from serve_app.webhooks import WebhookSender

logger = logging.getLogger("ray.serve")


@dataclass
class IngressConfig:
    """Everything an ingress replica needs; secrets arrive here as digests or dev-only values."""

    storage: StorageArgs
    signing_secret: bytes
    tokens: TokenDigests
    song_timeout_s: float
    health_timeout_s: float
    jobs: JobsArgs
    jobs_default_url: str  # the embedded SQLite file; the env var named in `jobs` wins
    webhook_secret: bytes | None  # dev only; production reads jobs.webhook_secret_env
    max_body_bytes: int
    rate_limit: RateLimitArgs


@serve.deployment(name="Ingress", max_ongoing_requests=256)
@serve.ingress()
class Ingress:
    async def __init__(
        self, llm: DeploymentHandle, music: DeploymentHandle, cover: DeploymentHandle, config: IngressConfig
    ):
        self.store = make_store(config.storage, signing_secret=config.signing_secret)
        jobs_cfg = config.jobs
        self.jobs = JobStore(
            os.environ.get(jobs_cfg.database_url_env) or config.jobs_default_url,
            lease_s=jobs_cfg.lease_s,
            max_queued=jobs_cfg.max_queued,
            max_attempts=jobs_cfg.max_attempts,
            webhook_max_attempts=jobs_cfg.webhook_max_attempts,
            webhook_backoff_base_s=jobs_cfg.webhook_backoff_base_s,
        )
        composer = SongComposer(llm, music, cover, self.store, key_prefix=config.storage.key_prefix)
        self.runner = JobRunner(
            self.jobs,
            composer,
            RunnerSettings(
                concurrency=jobs_cfg.concurrency,
                poll_interval_s=jobs_cfg.poll_interval_s,
                heartbeat_s=jobs_cfg.heartbeat_s,
                drain_timeout_s=jobs_cfg.drain_timeout_s,
                retry_base_s=jobs_cfg.retry_base_s,
            ),
        )
        webhook_secret = os.environ.get(jobs_cfg.webhook_secret_env, "").encode() or config.webhook_secret
        self.webhooks = WebhookSender(self.jobs, webhook_secret, self.runner.worker_id, url_guard=self._webhook_guard)
        self._allow_private = jobs_cfg.allow_private_webhooks
        self.services = Services(
            store=self.store,
            jobs=self.jobs,
            runner=self.runner,
            webhooks=self.webhooks,
            tokens=config.tokens,
            probes={
                "llm": llm.ready.remote,
                "music": music.ready.remote,
                "cover": cover.ready.remote,
                "storage": self._storage_ready,
                "jobs": self._jobs_ready,
            },
            url_ttl_s=config.storage.url_ttl_s,
            song_timeout_s=config.song_timeout_s,
            health_timeout_s=config.health_timeout_s,
            allow_private_webhooks=jobs_cfg.allow_private_webhooks,
            max_body_bytes=config.max_body_bytes,
            rate_limit=config.rate_limit,
        )
        self.runner.start()
        self.webhooks.start()
        self._gauges = asyncio.get_running_loop().create_task(self._report_queue_depth())

    async def _webhook_guard(self, url: str) -> None:
        from serve_app.netguard import check_webhook_url

        await check_webhook_url(url, allow_private=self._allow_private)

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
            await asyncio.sleep(5)

    def __serve_build_asgi_app__(self):
        return create_api(self.services)

    async def __del__(self):
        """Graceful shutdown (rolling redeploy, downscale): hand running songs back, don't drop them."""
        self._gauges.cancel()
        await self.runner.drain()
        await self.webhooks.stop()
