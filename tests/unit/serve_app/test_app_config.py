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
    """configs/prod.yaml's num_gpus shares of one 80 GB GPU against the full-size weights of each
    engine (bench/model_configs/*.json, every component the pipeline loads), with the CUDA context
    the engine reserves out of its share (deployments/runtime.py caps each process at share - context);
    and prod-multi-gpu.yaml's whole GPUs against the 48 GB L40S it asks for."""
    import json

    import ray.util.accelerators.accelerators as accelerators

    from deployments.runtime import CUDA_CONTEXT_RESERVE_BYTES

    GiB = 2**30
    gpu_80gb = 79.1 * GiB  # what torch reports for an H100/A100 80 GB
    l40s = 44.4 * GiB  # L40S 48 GB
    dtype_bytes = {"bfloat16": 2, "float16": 2, "float32": 4}

    def spec(name: str) -> dict:
        return json.loads((REPO / "bench" / "model_configs" / f"{name}.json").read_text())

    llm, music, cover = spec("qwen2-7b-instruct"), spec("acestep-v15-xl-turbo"), spec("sdxl-turbo")
    assert set(music["expected_params"]) == {"transformer", "condition_encoder", "text_encoder", "vae"}
    # AceStepPipeline's optional audio_tokenizer + audio_token_detokenizer (meta-device count of diffusers'
    # defaults, whose hidden size is the XL condition encoder's 2048): loaded when the checkpoint ships them.
    music_optional = 210_043_974
    params = {
        "llm": llm["published_params"]["model"],
        "music": sum(c["params"] for c in music["expected_params"].values()) + music_optional,
        "cover": sum(v for k, v in cover["published_params"].items() if k != "source"),
    }
    weights = {role: params[role] * dtype_bytes[s["dtype"]] for role, s in (("llm", llm), ("music", music),
                                                                              ("cover", cover))}
    # Working memory beyond the weights that a share must also hold (prod.yaml's budget comments):
    # the LLM's KV cache for 8 x 1.5k tokens + activations, a 600 s song's DiT + tiled-decode peak,
    # a batch of 4 512x512 covers decoded in fp16.
    kv = 28 * 4 * 128 * 2 * 2 * 8 * 1536
    working = {"llm": kv + 1 * GiB, "music": 8 * GiB, "cover": 2 * GiB}
    assert 14 * GiB < weights["llm"] < 14.5 * GiB and 10.5 * GiB < weights["music"] < 11 * GiB
    assert 6.3 * GiB < weights["cover"] < 6.6 * GiB

    args = AppArgs.model_validate(load("configs/prod.yaml")["applications"][0]["args"])
    shares = {role: getattr(args, role).deployment.num_gpus for role in ("llm", "music", "cover")}
    assert all(0 < s < 1 for s in shares.values())
    for role, share in shares.items():
        cap = share * gpu_80gb - CUDA_CONTEXT_RESERVE_BYTES  # the engine's allocator limit
        assert cap >= weights[role] + working[role], (role, cap / GiB, (weights[role] + working[role]) / GiB)
        assert cap >= 1.2 * weights[role], role
    # All three on one GPU with 20 % of it to spare (autoscaling headroom, fragmentation).
    assert sum(shares.values()) <= 0.8
    assert sum(shares.values()) * gpu_80gb <= gpu_80gb - 0.2 * gpu_80gb
    assert args.ingress.deployment.num_gpus == 0
    assert args.music.deployment.autoscaling_config["min_replicas"] >= 1  # never cold on a request
    assert args.storage.backend == "s3" and not args.auth.generate_dev_token
    # GPU types: Ray's own names, and the GPUs these budgets are for.
    known = {v for k, v in vars(accelerators).items() if k.isupper() and isinstance(v, str)}
    multi = AppArgs.model_validate(load("configs/prod-multi-gpu.yaml")["applications"][0]["args"])
    for role in ("llm", "music", "cover"):
        assert getattr(args, role).deployment.accelerator_type == accelerators.NVIDIA_H100 in known
        assert getattr(multi, role).deployment.accelerator_type == accelerators.NVIDIA_L40S in known
        assert getattr(multi, role).deployment.num_gpus == 1
        assert weights[role] + working[role] + CUDA_CONTEXT_RESERVE_BYTES <= l40s, role


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
