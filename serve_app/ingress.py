"""The ingress deployment: CPU-only, holds handles to the model deployments, serves the HTTP API."""

from __future__ import annotations

from dataclasses import dataclass

from ray import serve
from ray.serve.handle import DeploymentHandle

from serve_app.api import Services, create_api
from serve_app.auth import TokenDigests
from serve_app.composer import SongComposer
from serve_app.storage import StorageArgs, make_store


@dataclass
class IngressConfig:
    """Everything an ingress replica needs; secrets arrive here as digests or derived keys only."""

    storage: StorageArgs
    signing_secret: bytes
    tokens: TokenDigests
    song_timeout_s: float
    health_timeout_s: float


@serve.deployment(name="Ingress", max_ongoing_requests=256)
@serve.ingress()
class Ingress:
    def __init__(self, llm: DeploymentHandle, music: DeploymentHandle, cover: DeploymentHandle, config: IngressConfig):
        self.store = make_store(config.storage, signing_secret=config.signing_secret)
        composer = SongComposer(llm, music, cover, self.store, key_prefix=config.storage.key_prefix)
        self.services = Services(
            composer=composer,
            store=self.store,
            tokens=config.tokens,
            probes={
                "llm": llm.ready.remote,
                "music": music.ready.remote,
                "cover": cover.ready.remote,
                "storage": self._storage_ready,
            },
            url_ttl_s=config.storage.url_ttl_s,
            song_timeout_s=config.song_timeout_s,
            health_timeout_s=config.health_timeout_s,
        )

    async def _storage_ready(self) -> str:
        await self.store.check()
        return self.store.backend_name

    def __serve_build_asgi_app__(self):
        return create_api(self.services)
