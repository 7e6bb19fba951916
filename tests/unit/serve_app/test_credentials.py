"""One rule for every signing secret, checked at build and read again on each replica."""

from __future__ import annotations

import pytest

from serve_app.credentials import DevSecrets, MissingSecret, ReplicaSecrets, SecretNames, env_secret, secret_problem
from serve_app.storage import LocalStore, StorageArgs, StorageConfigError, make_store

NAMES = SecretNames(webhook="WEBHOOK_SIGNING_SECRET", storage="STORAGE_SIGNING_SECRET")
GOOD = "k" * 40


@pytest.mark.parametrize("value", ["changeme", "your-webhook-secret", "x" * 31, "<secret>"])
def test_placeholders_and_short_values_are_not_secrets(value):
    assert "at least 32 characters" in secret_problem("S", value)
    with pytest.raises(MissingSecret) as info:
        env_secret("S", {"S": value})
    assert value not in str(info.value)


def test_the_storage_backend_applies_the_same_rule(tmp_path):
    args = StorageArgs(backend="local", local_dir=str(tmp_path))
    with pytest.raises(StorageConfigError, match="at least 32 characters"):
        make_store(args, env={"STORAGE_SIGNING_SECRET": "x" * 20})
    assert isinstance(make_store(args, env={"STORAGE_SIGNING_SECRET": GOOD}), LocalStore)


def test_dev_generates_what_is_unset_and_the_generated_secrets_pass_the_rule(monkeypatch):
    monkeypatch.delenv("WEBHOOK_SIGNING_SECRET", raising=False)
    monkeypatch.setenv("STORAGE_SIGNING_SECRET", GOOD)
    dev = DevSecrets.for_build(NAMES, dev=True)
    assert dev.storage is None and secret_problem("W", dev.webhook) is None
    replica = ReplicaSecrets.resolve(NAMES, dev)
    assert replica.webhook == dev.webhook and replica.storage == GOOD.encode()


def test_production_refuses_to_build_without_a_secret(monkeypatch):
    monkeypatch.delenv("WEBHOOK_SIGNING_SECRET", raising=False)
    monkeypatch.setenv("STORAGE_SIGNING_SECRET", GOOD)
    with pytest.raises(MissingSecret, match="WEBHOOK_SIGNING_SECRET is not set"):
        DevSecrets.for_build(NAMES, dev=False)


def test_a_replica_without_the_secret_the_build_saw_refuses_to_start(monkeypatch):
    monkeypatch.setenv("WEBHOOK_SIGNING_SECRET", GOOD)
    monkeypatch.setenv("STORAGE_SIGNING_SECRET", GOOD)
    dev = DevSecrets.for_build(NAMES, dev=False)
    monkeypatch.delenv("WEBHOOK_SIGNING_SECRET")
    with pytest.raises(MissingSecret, match="not on this replica"):
        ReplicaSecrets.resolve(NAMES, dev)


def test_s3_needs_no_link_signing_secret(monkeypatch):
    monkeypatch.setenv("WEBHOOK_SIGNING_SECRET", GOOD)
    monkeypatch.delenv("STORAGE_SIGNING_SECRET", raising=False)
    names = SecretNames(webhook="WEBHOOK_SIGNING_SECRET", storage=None)
    assert ReplicaSecrets.resolve(names, DevSecrets.for_build(names, dev=False)).storage is None
