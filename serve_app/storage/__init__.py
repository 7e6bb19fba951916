"""Object storage for generated songs: audio, cover PNG and the JSON manifest.

Callers depend only on :class:`ObjectStore` and build it with :func:`make_store`, so the
same code runs against a local directory in dev and Cloudflare R2 (any S3 API) in production.
Secrets never travel through args/YAML: they are read from the environment here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .base import (
    MAX_KEY_BYTES,
    ObjectInfo,
    ObjectStore,
    SignedLinks,
    SignedUploads,
    content_type_for,
    validate_content_type,
    validate_key,
    validate_metadata,
    validate_prefix,
)
from .config import (
    ENV_ACCESS_KEY,
    ENV_BUCKET,
    ENV_ENDPOINT,
    ENV_SECRET_KEY,
    ENV_SIGNING_SECRET,
    S3Settings,
    StorageArgs,
    resolve_s3_settings,
    resolve_signing_secret,
)
from .errors import (
    LinkExpired,
    LinkInvalid,
    ObjectNotFound,
    StorageConfigError,
    StorageError,
)
from .local import LocalStore


def make_store(
    args: StorageArgs,
    *,
    signing_secret: bytes | None = None,
    env: Mapping[str, str] | None = None,
) -> ObjectStore:
    """Build the configured store; raise ``StorageConfigError`` if settings/env are missing.

    ``signing_secret`` (local backend) overrides ``STORAGE_SIGNING_SECRET``; ``env`` defaults
    to ``os.environ`` and exists for tests. No network I/O happens here: call
    ``await store.check()`` to verify the backend is reachable.
    """
    env = os.environ if env is None else env
    if args.backend == "local":
        return LocalStore(
            args.local_dir,
            resolve_signing_secret(signing_secret, env),
            public_base_url=args.public_base_url,
            url_ttl_s=args.url_ttl_s,
        )
    if args.backend == "s3":
        from .s3 import S3Store  # boto3 import is slow; only pay it when S3 is used

        return S3Store(resolve_s3_settings(args, env), url_ttl_s=args.url_ttl_s)
    raise StorageConfigError(f"unknown storage backend {args.backend!r}")


def __getattr__(name: str):
    # Lazy export so `from serve_app.storage import S3Store` works without importing boto3
    # for local-only processes.
    if name == "S3Store":
        from .s3 import S3Store

        return S3Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ENV_ACCESS_KEY",
    "ENV_BUCKET",
    "ENV_ENDPOINT",
    "ENV_SECRET_KEY",
    "ENV_SIGNING_SECRET",
    "MAX_KEY_BYTES",
    "LinkExpired",
    "LinkInvalid",
    "LocalStore",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "S3Settings",
    "S3Store",
    "SignedLinks",
    "SignedUploads",
    "StorageArgs",
    "StorageConfigError",
    "StorageError",
    "content_type_for",
    "make_store",
    "resolve_s3_settings",
    "resolve_signing_secret",
    "validate_content_type",
    "validate_key",
    "validate_metadata",
    "validate_prefix",
]
