"""StorageArgs validation and env resolution (no network, no S3 server)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from serve_app.storage import (
    S3Settings,
    StorageArgs,
    StorageConfigError,
    make_store,
    resolve_s3_settings,
)

R2_ENV = {
    "R2_BUCKET_NAME": "env-bucket",
    "R2_ENDPOINT_URL": "https://acct.r2.cloudflarestorage.com",
    "R2_ACCESS_KEY_ID": "AKIDSECRETVALUE123",
    "R2_SECRET_ACCESS_KEY": "very/secret+key",
}


def test_defaults_and_every_field_documented() -> None:
    args = StorageArgs()
    assert args.backend == "local" and args.url_ttl_s == 3600 and args.key_prefix == "songs"
    for name, field in StorageArgs.model_fields.items():
        assert field.description, name
    schema = StorageArgs.model_json_schema()
    assert "s3_bucket" in schema["properties"]
    assert not any("secret" in name or "access_key" in name for name in schema["properties"])


def test_s3_backend_validates_without_env() -> None:
    # YAML may say backend: s3 and leave bucket/endpoint to the environment.
    assert StorageArgs.model_validate({"backend": "s3"}).backend == "s3"


@pytest.mark.parametrize(
    "bad",
    [
        {"url_ttl_s": 59},
        {"url_ttl_s": 7 * 86400 + 1},
        {"backend": "gcs"},
        {"public_base_url": "ftp://x"},
        {"public_base_url": "127.0.0.1:8000"},
        {"s3_endpoint_url": "https://user:pw@host"},
        {"s3_addressing_style": "weird"},
        {"max_attempts": 0},
        {"key_prefix": "../x"},
        {"s3_access_key": "nope"},  # secrets are not fields: extra keys are refused
    ],
)
def test_invalid_args(bad: dict) -> None:
    with pytest.raises(ValidationError):
        StorageArgs.model_validate(bad)


def test_normalisation() -> None:
    args = StorageArgs(public_base_url="http://h:8000/", key_prefix="/songs/", s3_endpoint_url="http://e:1/")
    assert args.public_base_url == "http://h:8000"
    assert args.key_prefix == "songs"
    assert args.s3_endpoint_url == "http://e:1"


def test_resolve_from_env_and_args_override() -> None:
    settings = resolve_s3_settings(StorageArgs(backend="s3"), R2_ENV)
    assert settings.bucket == "env-bucket"
    assert settings.endpoint_url == "https://acct.r2.cloudflarestorage.com"
    assert settings.endpoint_host == "acct.r2.cloudflarestorage.com"
    args = StorageArgs(backend="s3", s3_bucket="arg-bucket", s3_endpoint_url="http://127.0.0.1:9")
    settings = resolve_s3_settings(args, R2_ENV)
    assert (settings.bucket, settings.endpoint_url) == ("arg-bucket", "http://127.0.0.1:9")
    assert settings.access_key_id == R2_ENV["R2_ACCESS_KEY_ID"]
    text = repr(settings)
    assert R2_ENV["R2_ACCESS_KEY_ID"] not in text and R2_ENV["R2_SECRET_ACCESS_KEY"] not in text


def test_resolve_reports_all_missing_names_without_values() -> None:
    with pytest.raises(StorageConfigError) as info:
        resolve_s3_settings(StorageArgs(backend="s3"), {"R2_SECRET_ACCESS_KEY": "s3cr3t-value"})
    message = str(info.value)
    for name in ["R2_BUCKET_NAME", "R2_ENDPOINT_URL", "R2_ACCESS_KEY_ID"]:
        assert name in message
    assert "R2_SECRET_ACCESS_KEY" not in message and "s3cr3t-value" not in message


def test_make_store_s3_builds_client_offline() -> None:
    store = make_store(StorageArgs(backend="s3", url_ttl_s=120), env=R2_ENV)
    assert store.backend_name == "s3"
    assert "very/secret" not in repr(store) and "AKIDSECRET" not in repr(store)
    url = store.signed_url("songs/a/audio.wav")
    assert url.startswith("https://acct.r2.cloudflarestorage.com/env-bucket/songs/a/audio.wav?")
    assert "X-Amz-Expires=120" in url
    with pytest.raises(ValueError):
        store.signed_url("songs/a/audio.wav", ttl_s=7 * 86400 + 1)
    store.close()


def test_s3_settings_is_frozen() -> None:
    settings = S3Settings(bucket="b", endpoint_url="http://e", access_key_id="a", secret_access_key="s")
    with pytest.raises(AttributeError):
        settings.bucket = "c"  # type: ignore[misc]
