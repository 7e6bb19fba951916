"""The one app builder: `import_path: serve_app.app:build_app` in every config."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from ray.serve import Application

from deployments.config import EngineArgs
from serve_app.args import AppArgs
from serve_app.auth import MissingSecret, load_tokens
from serve_app.ingress import Ingress, IngressConfig
from serve_app.placeholders import is_placeholder

logger = logging.getLogger("ray.serve")

SIGNING_SECRET_ENV = "STORAGE_SIGNING_SECRET"


def _absolute_model_path(engine: EngineArgs) -> EngineArgs:
    """Kits are given relative to the repo; replicas may run elsewhere, so pin them down here."""
    p = Path(engine.model)
    if not p.is_absolute() and (p.exists() or engine.model.startswith(("./", "../", "models/"))):
        return engine.model_copy(update={"model": str(p.resolve())})
    return engine


def _signing_secret(args: AppArgs) -> bytes:
    raw = os.environ.get(SIGNING_SECRET_ENV, "")
    if raw:
        if len(raw) < 32:
            raise MissingSecret(f"{SIGNING_SECRET_ENV} must be at least 32 characters")
        return raw.encode()
    if args.storage.backend == "local" and not args.auth.generate_dev_token:
        raise MissingSecret(f"{SIGNING_SECRET_ENV} is not set: the local storage backend signs links with it")
    # Dev (or S3, which presigns with its own keys): a per-deployment random secret is enough.
    return secrets.token_bytes(32)


def _sqlite_url(path: str) -> str:
    p = Path(path).resolve()
    p.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{p}"


def _webhook_secret(args: AppArgs) -> bytes | None:
    """Production reads the env var on each replica; dev gets a generated one."""
    raw = os.environ.get(args.jobs.webhook_secret_env, "")
    if raw:
        if is_placeholder(raw) or len(raw) < 32:
            raise MissingSecret(f"{args.jobs.webhook_secret_env} must be a real secret of at least 32 characters")
        return None
    if not args.auth.generate_dev_token:
        raise MissingSecret(f"{args.jobs.webhook_secret_env} is not set: webhooks are signed with it")
    return secrets.token_bytes(32)


def build_app(args: AppArgs) -> Application:
    """Validate the config, resolve secrets from the environment and compose the deployments."""
    from deployments.cover import CoverDeployment
    from deployments.llm import LLMDeployment
    from deployments.music import MusicDeployment
    from serve_app.storage import make_store

    args = AppArgs.model_validate(args)
    tokens, generated = load_tokens(args.auth.token_env, generate_if_missing=args.auth.generate_dev_token)
    if generated:
        # Printed once, to the operator's terminal only; never logged.
        print(f"\n  {args.auth.token_env} was not set; generated a dev token for this run:\n\n    {generated}\n", flush=True)
    storage = args.storage
    if storage.backend == "local":
        storage = storage.model_copy(update={"local_dir": str(Path(storage.local_dir).resolve())})
    signing_secret = _signing_secret(args)
    make_store(storage, signing_secret=signing_secret)  # fail now, not on the first song, if env is missing

    llm = LLMDeployment.options(**args.llm.deployment.serve_options()).bind(
        _absolute_model_path(args.llm.engine).model_dump()
    )
    music = MusicDeployment.options(**args.music.deployment.serve_options()).bind(
        _absolute_model_path(args.music.engine).model_dump()
    )
    cover = CoverDeployment.options(**args.cover.deployment.serve_options()).bind(
        _absolute_model_path(args.cover.engine).model_dump()
    )
    config = IngressConfig(
        storage=storage,
        signing_secret=signing_secret,
        tokens=tokens,
        song_timeout_s=args.ingress.song_timeout_s,
        health_timeout_s=args.ingress.health_timeout_s,
        jobs=args.jobs,
        jobs_default_url=_sqlite_url(args.jobs.sqlite_path),
        webhook_secret=_webhook_secret(args),
        max_body_bytes=args.ingress.max_body_bytes,
        rate_limit=args.ingress.rate_limit,
    )
    return Ingress.options(**args.ingress.deployment.serve_options()).bind(llm, music, cover, config)
