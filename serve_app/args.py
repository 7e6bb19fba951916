"""The app builder's typed arguments: everything `configs/*.yaml` may set, validated and described.

Secrets are deliberately absent: API tokens, R2 keys and link-signing secrets come from the
environment (see `serve_app.secrets`), never from YAML.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from deployments.config import CoverArgs, LLMArgs, MusicArgs
from serve_app.storage.config import StorageArgs


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class DeploymentOptions(_Strict):
    """Ray Serve placement and scaling for one deployment."""

    num_replicas: int | None = Field(default=None, ge=1, description="Fixed replica count (omit with autoscaling).")
    autoscaling_config: dict[str, Any] | None = Field(
        default=None,
        description="Ray Serve autoscaling_config (min_replicas, max_replicas, target_ongoing_requests, "
        "upscale_delay_s, downscale_delay_s, ...).",
    )
    max_ongoing_requests: int = Field(ge=1, le=10_000, description="Concurrent requests one replica accepts.")
    max_queued_requests: int = Field(
        default=-1, ge=-1, description="Requests a caller may queue for this deployment (-1 = unbounded)."
    )
    num_cpus: float = Field(default=1.0, ge=0, description="CPUs reserved per replica.")
    num_gpus: float = Field(default=0.0, ge=0, le=8, description="GPUs (fractional allowed) per replica.")
    memory: int | None = Field(default=None, ge=0, description="Bytes of RAM reserved per replica (scheduling).")
    accelerator_type: str | None = Field(default=None, description="Ray accelerator type, e.g. 'L40S' or 'H100'.")
    runtime_env: dict[str, Any] | None = Field(default=None, description="Per-replica runtime_env (env_vars...).")
    graceful_shutdown_timeout_s: float = Field(default=20.0, ge=0, description="Wait for in-flight work on stop.")
    health_check_period_s: float = Field(default=10.0, gt=0, description="Seconds between replica health checks.")
    health_check_timeout_s: float = Field(default=30.0, gt=0, description="A health check slower than this fails.")

    @model_validator(mode="after")
    def _one_scaling_mode(self) -> DeploymentOptions:
        if self.num_replicas is not None and self.autoscaling_config is not None:
            raise ValueError("set either num_replicas or autoscaling_config, not both")
        if self.autoscaling_config is not None:
            from ray.serve.config import AutoscalingConfig

            known = set(getattr(AutoscalingConfig, "model_fields", None) or AutoscalingConfig.__fields__)
            unknown = sorted(set(self.autoscaling_config) - known)
            if unknown:
                raise ValueError(f"unknown autoscaling_config keys {unknown}; allowed: {sorted(known)}")
            AutoscalingConfig(**self.autoscaling_config)  # bad values fail at config time, not deploy time
        return self

    def serve_options(self) -> dict[str, Any]:
        """Keyword arguments for `Deployment.options(...)`."""
        actor: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.memory is not None:
            actor["memory"] = self.memory
        if self.accelerator_type:
            actor["accelerator_type"] = self.accelerator_type
        if self.runtime_env:
            actor["runtime_env"] = self.runtime_env
        opts: dict[str, Any] = {
            "ray_actor_options": actor,
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "graceful_shutdown_timeout_s": self.graceful_shutdown_timeout_s,
            "health_check_period_s": self.health_check_period_s,
            "health_check_timeout_s": self.health_check_timeout_s,
        }
        if self.autoscaling_config is not None:
            opts["autoscaling_config"] = self.autoscaling_config
        else:
            opts["num_replicas"] = self.num_replicas or 1
        return opts


class LLMService(_Strict):
    engine: LLMArgs = Field(default_factory=LLMArgs, description="Model and decoding settings.")
    deployment: DeploymentOptions = Field(
        default_factory=lambda: DeploymentOptions(max_ongoing_requests=32), description="Placement and scaling."
    )


class MusicService(_Strict):
    engine: MusicArgs = Field(default_factory=MusicArgs, description="Model and sampling settings.")
    deployment: DeploymentOptions = Field(
        default_factory=lambda: DeploymentOptions(max_ongoing_requests=4), description="Placement and scaling."
    )


class CoverService(_Strict):
    engine: CoverArgs = Field(default_factory=CoverArgs, description="Model and painting settings.")
    deployment: DeploymentOptions = Field(
        default_factory=lambda: DeploymentOptions(max_ongoing_requests=16), description="Placement and scaling."
    )


class AuthArgs(_Strict):
    token_env: str = Field(
        default="API_BEARER_TOKEN", description="Environment variable holding one or more comma-separated tokens."
    )
    generate_dev_token: bool = Field(
        default=False,
        description="Dev only: when the variable is unset, generate a token and print it once at start-up.",
    )


class RateLimitArgs(_Strict):
    enabled: bool = Field(default=True, description="Per-token token bucket on authenticated endpoints.")
    requests_per_minute: float = Field(default=120.0, gt=0, le=1e6, description="Sustained rate per token.")
    burst: int = Field(default=30, ge=1, le=100_000, description="Requests a token may make at once.")
    failed_auth_per_minute: float = Field(
        default=30.0, gt=0, le=1e6,
        description="Sustained rate of unknown or revoked API keys (ssk_...) per client address, per ingress "
                    "replica: past it (and failed_auth_burst) that address gets 429 before its next key lookup "
                    "reaches the database.",
    )
    failed_auth_burst: int = Field(default=20, ge=1, le=100_000,
                                   description="Unknown API keys a client address may send at once.")


class IngressArgs(_Strict):
    deployment: DeploymentOptions = Field(
        default_factory=lambda: DeploymentOptions(max_ongoing_requests=256, num_cpus=0.5),
        description="Placement and scaling of the CPU-only HTTP ingress.",
    )
    song_timeout_s: float = Field(
        default=1800.0, gt=0, le=3 * 3600, description="A song that takes longer than this fails with 504."
    )
    health_timeout_s: float = Field(default=5.0, gt=0, le=60, description="Per-deployment readiness probe timeout.")
    max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, le=16 * 1024 * 1024, description="Larger request bodies get 413 before parsing."
    )
    max_upload_bytes: int = Field(
        default=100 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024,
        description="POST /v1/uploads bodies (audio files) larger than this get 413 before reading.",
    )
    rate_limit: RateLimitArgs = Field(default_factory=RateLimitArgs, description="Per-token request rate limit.")


class QuotaArgs(_Strict):
    """Per-API-key quotas (defaults; `python -m serve_app.keys create --quota NAME=VALUE` overrides one
    key's). Checked atomically at submit; over one is a 429 naming it. Environment tokens (admin keys)
    have no quotas (they still share the queue fairly and are rate limited)."""

    active_songs: int = Field(default=10, ge=0, le=100_000, description="Songs queued or running at once.")
    songs_per_day: int = Field(default=200, ge=0, le=10_000_000, description="Songs submitted per UTC day.")
    audio_minutes_per_day: float = Field(
        default=300.0, ge=0, le=10_000_000,
        description="Minutes of audio requested per UTC day (duration x variations, counted at submit).",
    )


class KeysArgs(_Strict):
    """API keys live in the job database (`python -m serve_app.keys`); replicas cache lookups briefly."""

    cache_ttl_s: float = Field(
        default=3.0, gt=0, le=5.0,
        description="How long a replica trusts a key lookup: a revoked key is refused within this.",
    )
    touch_interval_s: float = Field(
        default=60.0, ge=1, le=3600, description="last_used_at is written at most this often per key."
    )


class JobsArgs(_Strict):
    """The durable job queue every song goes through (also the seed's synchronous endpoints)."""

    database_url_env: str = Field(
        default="JOBS_DATABASE_URL",
        description="Env var with a SQLAlchemy URL (postgresql+psycopg://... for several nodes); "
        "it holds a password, so it never goes in YAML.",
    )
    sqlite_path: str = Field(
        default="var/jobs.db", description="Embedded SQLite file used when the env var is unset (one node)."
    )
    lease_s: float = Field(default=15.0, ge=2, le=300, description="A running job's lease; renewed every heartbeat.")
    heartbeat_s: float = Field(default=1.0, gt=0, le=60, description="Lease renewal and cancel check interval.")
    max_queued: int = Field(default=100, ge=1, le=100_000, description="Queued jobs beyond this get 429.")
    max_queued_per_owner: int | None = Field(
        default=None, ge=1, le=100_000,
        description="Queued jobs one caller may have (its share of max_queued); default ceil(max_queued / 4).",
    )
    quotas: QuotaArgs = Field(default_factory=QuotaArgs, description="Per-API-key quota defaults.")
    keys: KeysArgs = Field(default_factory=KeysArgs, description="API key lookups.")
    max_attempts: int = Field(default=3, ge=1, le=10, description="Tries per job before it fails for good.")
    retry_base_s: float = Field(
        default=2.0, ge=0, le=60, description="Delay before a job's 2nd try after a transient fault; doubles."
    )
    concurrency: int = Field(default=4, ge=1, le=256, description="Songs one ingress replica composes at once.")
    poll_interval_s: float = Field(default=0.5, gt=0, le=10, description="How often idle workers look for jobs.")
    drain_timeout_s: float = Field(
        default=10.0, ge=0, le=3600, description="On shutdown, wait this long for running songs, then hand them back."
    )
    webhook_secret_env: str = Field(
        default="WEBHOOK_SIGNING_SECRET", description="Env var with the webhook HMAC secret (dev generates one)."
    )
    webhook_max_attempts: int = Field(default=8, ge=1, le=50, description="Webhook tries before giving up.")
    webhook_backoff_base_s: float = Field(
        default=10.0, gt=0, le=3600, description="First webhook retry delay; doubles each try (capped at 1 h)."
    )
    allow_private_webhooks: bool = Field(
        default=False, description="Allow webhook URLs on loopback/private/link-local addresses (dev and tests)."
    )

    def queue_share(self) -> int:
        """Queued jobs one owner may hold: max_queued_per_owner, else a quarter of max_queued."""
        if self.max_queued_per_owner is not None:
            return min(self.max_queued_per_owner, self.max_queued)
        return max(1, -(-self.max_queued // 4))


class AppArgs(_Strict):
    """Arguments of `serve_app.app:build_app`, the only import_path of every config."""

    llm: LLMService = Field(default_factory=LLMService, description="Lyrics/tags/title LLM deployment.")
    music: MusicService = Field(default_factory=MusicService, description="ACE-Step 1.5 music deployment.")
    cover: CoverService = Field(default_factory=CoverService, description="SDXL-Turbo cover art deployment.")
    music_base: MusicService | None = Field(default=None, description=(
        "Optional second ACE-Step 1.5 deployment ('MusicBase') with a base (non-turbo) checkpoint, its own GPU "
        "share and scaling: edits that `music` cannot run (extract, lego, complete on a turbo `music`) go to it; "
        "everything else stays on `music`. Unset: those tasks are a 422 unless `music` is a base checkpoint."))
    storage: StorageArgs = Field(default_factory=StorageArgs, description="Where songs are stored.")
    auth: AuthArgs = Field(default_factory=AuthArgs, description="Bearer-token settings (tokens from env).")
    ingress: IngressArgs = Field(default_factory=IngressArgs, description="The HTTP ingress deployment.")
    jobs: JobsArgs = Field(default_factory=JobsArgs, description="Durable song jobs.")

    @field_validator("llm", "music", "cover", mode="before")
    @classmethod
    def _none_is_default(cls, v: Any) -> Any:
        return {} if v is None else v
