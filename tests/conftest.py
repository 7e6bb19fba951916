"""Session-wide test setup: offline hubs, no Ray auth, the local model kits, real servers."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import secrets  # noqa: E402

import pytest  # noqa: E402

from serve_app.localdev.cluster import MODELS, config_args, merge, start_cluster, stop_cluster  # noqa: E402
from tests.support.fixtures import s3_env, s3_server  # noqa: E402,F401


@pytest.fixture(scope="session")
def kits() -> dict:
    """The local model kits (built by `make setup`; building here is a no-op when they exist)."""
    from deployments.kits import build_all

    return build_all(MODELS)


@pytest.fixture(scope="session")
def api_token() -> str:
    return secrets.token_urlsafe(24)


@pytest.fixture(scope="session")
def other_token() -> str:
    """A second valid token: another user, who must not see the first one's jobs."""
    return secrets.token_urlsafe(24)


@pytest.fixture(scope="session")
def serve_cluster(kits):
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        stop_cluster()


def fast_app_args(storage_dir: str, *, llm_engine: str = "transformers", **override) -> dict:
    """configs/dev.yaml's args with the fastest kits: tiny Qwen2 instead of SmolLM2, short answers.

    `llm_engine`: the session stack (`song_api`) and `make serve`'s test run vLLM as dev does; the
    module stacks that test faults, storage and placement take the in-replica transformers engine,
    which deploys in about half the time (21 s vs 41 s here) and needs no engine-core processes."""
    base = config_args("configs/dev.yaml")
    fast = {
        "llm": {"engine": {"model": str(MODELS / "qwen2-tiny-kit"), "engine": llm_engine, "max_new_tokens_lyrics": 48,
                           "max_new_tokens_tags": 24, "max_new_tokens_meta": 16}},
        "storage": {"local_dir": storage_dir},
        "jobs": {"sqlite_path": f"{storage_dir}/jobs.db", "allow_private_webhooks": True, "heartbeat_s": 0.5,
                 "poll_interval_s": 0.2, "max_queued": 8, "webhook_backoff_base_s": 0.5,
                 # One test token submits whole bursts: the per-owner queue share has its own tests.
                 "max_queued_per_owner": 8},
        "auth": {"generate_dev_token": False},
        # Tests submit bursts on purpose; the rate limit has its own tests.
        "ingress": {"rate_limit": {"requests_per_minute": 60000, "burst": 1000}},
    }
    return merge(merge(base, fast), override)


@pytest.fixture(scope="session")
def song_api(serve_cluster, api_token, other_token, tmp_path_factory) -> dict:
    """The dev app (local storage) deployed on the session cluster; returns base URL, tokens, storage dir."""
    storage_dir = str(tmp_path_factory.mktemp("storage"))
    args = fast_app_args(storage_dir, llm_engine="vllm")
    # A second music deployment on the base kit, for the tasks the turbo kit lacks (extract, lego,
    # complete): the composition production gets by setting music_base.
    args["music_base"] = {**args["music"], "engine": {**args["music"]["engine"],
                                                      "model": str(MODELS / "acestep-v15-base-kit")}}
    base = serve_cluster.deploy(args, name="songsmith", route_prefix="/", token=f"{api_token},{other_token}")
    return {"base_url": base, "token": api_token, "other_token": other_token, "storage_dir": storage_dir}
