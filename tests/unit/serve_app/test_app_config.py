"""The shipped configs validate, the GPU budget adds up, and the app refuses missing or fake secrets."""

from __future__ import annotations

import pytest
import yaml

from serve_app.app import build_app
from serve_app.args import AppArgs
from serve_app.credentials import MissingSecret
from serve_app.localdev.cluster import REPO
from serve_app.storage import StorageConfigError

CONFIGS = ["configs/dev.yaml", "configs/prod.yaml", "configs/prod-multi-gpu.yaml"]
GOOD_ENV = {
    "API_BEARER_TOKEN": "tok_" + "a" * 40 + ",tok_" + "b" * 40,
    "R2_BUCKET_NAME": "songs",
    "R2_ENDPOINT_URL": "https://0123abcd.r2.cloudflarestorage.com",
    "R2_ACCESS_KEY_ID": "AKREAL" + "1" * 20,
    "R2_SECRET_ACCESS_KEY": "S" * 40,
    "WEBHOOK_SIGNING_SECRET": "W" * 40,
}


def load(path: str) -> dict:
    return yaml.safe_load((REPO / path).read_text())


@pytest.mark.parametrize("path", CONFIGS)
def test_config_args_validate_with_the_one_builder(path):
    doc = load(path)
    [app] = doc["applications"]
    assert app["import_path"] == "serve_app.app:build_app"
    AppArgs.model_validate(app["args"])


def test_prod_fits_one_80gb_gpu_with_headroom():
    args = AppArgs.model_validate(load("configs/prod.yaml")["applications"][0]["args"])
    shares = [args.llm.deployment.num_gpus, args.music.deployment.num_gpus, args.cover.deployment.num_gpus]
    assert all(0 < s < 1 for s in shares)
    assert sum(shares) <= 0.8
    assert args.ingress.deployment.num_gpus == 0
    assert args.music.deployment.autoscaling_config["min_replicas"] >= 1  # never cold on a request
    assert args.storage.backend == "s3" and not args.auth.generate_dev_token


def test_multi_gpu_profile_uses_whole_gpus():
    args = AppArgs.model_validate(load("configs/prod-multi-gpu.yaml")["applications"][0]["args"])
    assert [args.llm.deployment.num_gpus, args.music.deployment.num_gpus, args.cover.deployment.num_gpus] == [1, 1, 1]


def test_http_options_suit_minute_long_songs():
    http = load("configs/prod.yaml")["http_options"]
    assert http["host"] == "0.0.0.0" and http["request_timeout_s"] >= 600 and http["keep_alive_timeout_s"] > 60
    assert load("configs/dev.yaml")["http_options"]["host"] == "127.0.0.1"


def prod_args() -> dict:
    return load("configs/prod.yaml")["applications"][0]["args"]


def set_env(monkeypatch, **env):
    for k in GOOD_ENV:
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)


def test_prod_builds_when_every_secret_is_set(monkeypatch):
    set_env(monkeypatch, **GOOD_ENV)
    app = build_app(prod_args())
    assert app is not None


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("API_BEARER_TOKEN", None, MissingSecret),
        ("API_BEARER_TOKEN", "your-secure-bearer-token", MissingSecret),
        ("API_BEARER_TOKEN", "q7Zk2-x9", MissingSecret),
        ("R2_SECRET_ACCESS_KEY", None, StorageConfigError),
        ("R2_SECRET_ACCESS_KEY", "your-r2-secret-key", StorageConfigError),
        ("R2_ENDPOINT_URL", "https://your-account-id.r2.cloudflarestorage.com", StorageConfigError),
        ("R2_BUCKET_NAME", "your-bucket-name", StorageConfigError),
        ("WEBHOOK_SIGNING_SECRET", None, MissingSecret),
        ("WEBHOOK_SIGNING_SECRET", "changeme", MissingSecret),
    ],
)
def test_prod_refuses_missing_or_placeholder_secrets(monkeypatch, name, value, error):
    env = dict(GOOD_ENV)
    if value is None:
        env.pop(name)
    else:
        env[name] = value
    set_env(monkeypatch, **env)
    with pytest.raises(error) as exc:
        build_app(prod_args())
    assert name in str(exc.value)
    for secret in GOOD_ENV.values():
        assert secret not in str(exc.value)
    if value:
        assert value not in str(exc.value)


def test_dev_generates_a_token_once(monkeypatch, capsys, tmp_path):
    set_env(monkeypatch)
    args = load("configs/dev.yaml")["applications"][0]["args"]
    args["storage"]["local_dir"] = str(tmp_path)
    build_app(args)
    out = capsys.readouterr().out
    assert "generated a dev token" in out
    token = out.split("generated a dev token for this run:")[1].split()[0]
    assert len(token) >= 16


def test_scaling_modes_are_exclusive():
    with pytest.raises(ValueError, match="either num_replicas or autoscaling_config"):
        AppArgs.model_validate({"music": {"deployment": {"max_ongoing_requests": 1, "num_replicas": 2,
                                                         "autoscaling_config": {"min_replicas": 1}}}})
    with pytest.raises(ValueError, match="min_replica"):
        AppArgs.model_validate({"music": {"deployment": {"max_ongoing_requests": 1,
                                                         "autoscaling_config": {"min_replica": 1}}}})
    with pytest.raises(ValueError, match="min_replicas"):
        AppArgs.model_validate({"music": {"deployment": {"max_ongoing_requests": 1,
                                                         "autoscaling_config": {"min_replicas": 3, "max_replicas": 2}}}})
    with pytest.raises(ValueError):
        AppArgs.model_validate({"music": {"engine": {"modle": "typo"}}})
