"""The one app builder: `import_path: serve_app.app:build_app` in every config."""

from __future__ import annotations

import logging
from pathlib import Path

from ray.serve import Application

from deployments.config import EngineArgs, is_local_model
from serve_app.args import AppArgs
from serve_app.auth import load_tokens
from serve_app.credentials import DevSecrets
from serve_app.ingress import Ingress, IngressConfig

logger = logging.getLogger("ray.serve")
MUSIC_BASE_NAME = "MusicBase"  # the second music deployment (a base checkpoint), when configured


def _absolute_model_path(engine: EngineArgs) -> EngineArgs:
    """Kits are given relative to the repo; replicas may run elsewhere, so pin them down here."""
    if is_local_model(engine.model) and not Path(engine.model).is_absolute():
        return engine.model_copy(update={"model": str(Path(engine.model).expanduser().resolve())})
    return engine


def _sqlite_url(path: str) -> str:
    p = Path(path).resolve()
    p.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{p}"


def build_app(args: AppArgs) -> Application:
    """Validate the config, check secrets in the environment and compose the deployments."""
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
    names = IngressConfig.secret_names(args.jobs, storage)
    dev_secrets = DevSecrets.for_build(names, dev=args.auth.generate_dev_token)
    make_store(storage, signing_secret=dev_secrets.storage)  # fail now, not on the first song, if env is missing

    llm = LLMDeployment.options(**args.llm.deployment.serve_options()).bind(
        _absolute_model_path(args.llm.engine).model_dump()
    )
    music = MusicDeployment.options(**args.music.deployment.serve_options()).bind(
        _absolute_model_path(args.music.engine).model_dump()
    )
    cover = CoverDeployment.options(**args.cover.deployment.serve_options()).bind(
        _absolute_model_path(args.cover.engine).model_dump()
    )
    music_base = None
    if args.music_base is not None:
        music_base = MusicDeployment.options(name=MUSIC_BASE_NAME, **args.music_base.deployment.serve_options()).bind(
            _absolute_model_path(args.music_base.engine).model_dump()
        )
    config = IngressConfig(
        storage=storage,
        dev_secrets=dev_secrets,
        tokens=tokens,
        song_timeout_s=args.ingress.song_timeout_s,
        health_timeout_s=args.ingress.health_timeout_s,
        jobs=args.jobs,
        jobs_default_url=_sqlite_url(args.jobs.sqlite_path),
        max_body_bytes=args.ingress.max_body_bytes,
        max_upload_bytes=args.ingress.max_upload_bytes,
        rate_limit=args.ingress.rate_limit,
    )
    return Ingress.options(**args.ingress.deployment.serve_options()).bind(llm, music, cover, config,
                                                                         music_base=music_base)
