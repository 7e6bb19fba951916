"""Storage configuration: the typed args model and env resolution.

``StorageArgs`` lives inside the application's args model and YAML config, so it holds only
non-secret settings and validates without any environment. Secrets (the R2/S3 keys and the
local link-signing secret) come from the process environment at store-construction time via
``resolve_s3_settings`` / ``resolve_signing_secret``, which is also where "backend s3 needs a
bucket and an endpoint" is enforced: the bucket/endpoint may legitimately come from env only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from serve_app.credentials import STORAGE_SIGNING_SECRET, secret_problem

from .base import validate_prefix
from .errors import StorageConfigError

ENV_BUCKET = "R2_BUCKET_NAME"
ENV_ENDPOINT = "R2_ENDPOINT_URL"
ENV_ACCESS_KEY = "R2_ACCESS_KEY_ID"
ENV_SECRET_KEY = "R2_SECRET_ACCESS_KEY"
ENV_SIGNING_SECRET = STORAGE_SIGNING_SECRET

MAX_PRESIGN_TTL_S = 7 * 86400  # SigV4 presigned URLs cannot outlive 7 days


def _check_http_url(value: str, field_name: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{field_name} must be an http(s) URL with a host, got {value!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"{field_name} must not have a query or fragment")
    if parts.username or parts.password:
        raise ValueError(f"{field_name} must not embed credentials")
    return value.rstrip("/")


class StorageArgs(BaseModel):
    """Where songs' audio, cover art and manifests are stored, and how links are made."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["local", "s3"] = Field(
        default="local",
        description="Storage backend: 'local' (a directory, for dev/tests) or 's3' "
        "(any S3-compatible store; Cloudflare R2 in production).",
    )
    local_dir: str = Field(
        default="var/storage",
        description="Root directory of the local backend. Relative paths resolve against the "
        "working directory of the process that builds the store; prefer an absolute path "
        "when several processes (Ray replicas) share it.",
    )
    public_base_url: str | None = Field(
        default=None,
        description="Base URL the ingress is reachable at (e.g. 'http://127.0.0.1:8000'), used "
        "to build absolute local signed links; None gives relative links '/files/...'.",
    )
    url_ttl_s: int = Field(
        default=3600,
        ge=60,
        le=MAX_PRESIGN_TTL_S,
        description="Lifetime of signed download links in seconds (60 s to 7 days, the S3 "
        "presign maximum).",
    )
    key_prefix: str = Field(
        default="songs",
        description="Key prefix under which songs are stored (e.g. 'songs' -> "
        "'songs/<id>/audio.wav'). May be empty.",
    )
    s3_bucket: str | None = Field(
        default=None,
        description=f"S3 bucket name; if unset, taken from the {ENV_BUCKET} env var.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description=f"S3 endpoint URL (R2: 'https://<account>.r2.cloudflarestorage.com'); if "
        f"unset, taken from the {ENV_ENDPOINT} env var.",
    )
    s3_region: str = Field(
        default="auto",
        min_length=1,
        description="S3 region used for SigV4 signing; R2 expects 'auto'.",
    )
    s3_addressing_style: Literal["path", "virtual", "auto"] = Field(
        default="path",
        description="S3 addressing style; 'path' works with R2, SeaweedFS and MinIO.",
    )
    max_attempts: int = Field(
        default=5,
        ge=1,
        le=20,
        description="Total attempts per S3 request (first try + retries, botocore 'standard' "
        "retry mode with exponential backoff).",
    )
    connect_timeout_s: float = Field(
        default=5.0, gt=0, le=300, description="S3 connect timeout in seconds."
    )
    read_timeout_s: float = Field(
        default=60.0, gt=0, le=3600, description="S3 read timeout in seconds."
    )
    multipart_threshold_mib: int = Field(
        default=8,
        ge=5,
        le=1024,
        description="Uploads of at least this many MiB use S3 multipart upload (parts of the "
        "same size; S3 requires parts of at least 5 MiB).",
    )

    @field_validator("public_base_url")
    @classmethod
    def _public_base_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value, "public_base_url")

    @field_validator("s3_endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value, "s3_endpoint_url")

    @field_validator("key_prefix")
    @classmethod
    def _key_prefix(cls, value: str) -> str:
        value = value.strip("/")
        validate_prefix(value)
        return value

    @field_validator("s3_bucket")
    @classmethod
    def _bucket(cls, value: str | None) -> str | None:
        if value is not None and not (3 <= len(value) <= 63):
            raise ValueError("s3_bucket must be 3..63 characters")
        return value


@dataclass(frozen=True)
class S3Settings:
    """Everything needed to build an S3 client. ``repr`` never shows the keys."""

    bucket: str
    endpoint_url: str
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    region: str = "auto"
    addressing_style: Literal["path", "virtual", "auto"] = "path"
    max_attempts: int = 5
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0
    multipart_threshold_bytes: int = 8 * 1024 * 1024

    @property
    def endpoint_host(self) -> str:
        return urlsplit(self.endpoint_url).netloc or self.endpoint_url


def resolve_s3_settings(args: StorageArgs, env: Mapping[str, str] | None = None) -> S3Settings:
    """Combine args with the environment; args win for bucket/endpoint, keys are env-only.

    Raises ``StorageConfigError`` naming every missing setting (names only, never values).
    """
    env = os.environ if env is None else env
    bucket = args.s3_bucket or env.get(ENV_BUCKET, "").strip() or None
    endpoint = args.s3_endpoint_url or env.get(ENV_ENDPOINT, "").strip() or None
    access_key = env.get(ENV_ACCESS_KEY, "").strip()
    secret_key = env.get(ENV_SECRET_KEY, "").strip()
    missing = []
    if not bucket:
        missing.append(f"bucket (storage.s3_bucket or {ENV_BUCKET})")
    if not endpoint:
        missing.append(f"endpoint (storage.s3_endpoint_url or {ENV_ENDPOINT})")
    if not access_key:
        missing.append(ENV_ACCESS_KEY)
    if not secret_key:
        missing.append(ENV_SECRET_KEY)
    if missing:
        raise StorageConfigError("S3 storage is not configured; missing: " + ", ".join(missing))
    from serve_app.placeholders import is_placeholder

    fake = [name for name, value in ((ENV_ACCESS_KEY, access_key), (ENV_SECRET_KEY, secret_key),
                                     (ENV_BUCKET, bucket), (ENV_ENDPOINT, endpoint)) if is_placeholder(value)]
    if fake:
        raise StorageConfigError("S3 storage settings still hold documentation placeholders: " + ", ".join(fake))
    assert bucket is not None and endpoint is not None
    try:
        endpoint = _check_http_url(endpoint, ENV_ENDPOINT if not args.s3_endpoint_url else "s3_endpoint_url")
    except ValueError as exc:
        raise StorageConfigError(str(exc)) from None
    return S3Settings(
        bucket=bucket,
        endpoint_url=endpoint,
        access_key_id=access_key,
        secret_access_key=secret_key,
        region=args.s3_region,
        addressing_style=args.s3_addressing_style,
        max_attempts=args.max_attempts,
        connect_timeout_s=args.connect_timeout_s,
        read_timeout_s=args.read_timeout_s,
        multipart_threshold_bytes=args.multipart_threshold_mib * 1024 * 1024,
    )


def resolve_signing_secret(
    explicit: bytes | None = None, env: Mapping[str, str] | None = None
) -> bytes:
    """Return the local link-signing secret: the explicit one, else ``STORAGE_SIGNING_SECRET``.

    Every replica that serves or signs links must use the same secret, so there is no silent
    random fallback here: the app builder generates one for dev and passes it explicitly.
    """
    env = os.environ if env is None else env
    secret = explicit
    if secret is None:
        raw = env.get(ENV_SIGNING_SECRET, "")
        secret = raw.encode("utf-8") if raw else None
    if not secret:
        raise StorageConfigError(
            f"local storage needs a link-signing secret: set {ENV_SIGNING_SECRET} or pass "
            "signing_secret"
        )
    if problem := secret_problem(ENV_SIGNING_SECRET, secret):
        raise StorageConfigError(problem)
    return secret
