"""S3-compatible object store (Cloudflare R2 in production, SeaweedFS in tests) via boto3.

Why these choices:
- One boto3 client per store, built once: clients are thread-safe and own the connection
  pool, so every ``asyncio.to_thread`` call reuses warm connections.
- SigV4, path-style addressing, region ``auto``: what R2 expects and what every S3 clone
  (SeaweedFS, MinIO) accepts.
- Checksums only "when required": boto3 >= 1.36 adds CRC trailers by default, which several
  S3-compatible servers have rejected at times; MD5/CRC are still sent where S3 demands them.
- Every botocore failure becomes a ``StorageError`` whose message names the bucket, the
  endpoint host or the env var to fix, and never the key id, secret or a signature.
"""

from __future__ import annotations

import asyncio
import io
import re
from typing import Any

import boto3
import botocore.exceptions as bce
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from .base import (
    DEFAULT_CONTENT_TYPE,
    ObjectInfo,
    ObjectStore,
    validate_key,
    validate_prefix,
)
from .config import ENV_ACCESS_KEY, ENV_SECRET_KEY, MAX_PRESIGN_TTL_S, S3Settings
from .errors import ObjectNotFound, StorageError

_CREDENTIAL_CODES = {
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "InvalidToken",
    "ExpiredToken",
    "AuthorizationHeaderMalformed",
    "InvalidSecurity",
    "Unauthorized",
}
_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}
_DENIED_CODES = {"AccessDenied", "403", "Forbidden", "AllAccessDisabled"}
_NETWORK_ERRORS = (
    bce.EndpointConnectionError,
    bce.ConnectTimeoutError,
    bce.ReadTimeoutError,
    bce.ConnectionClosedError,
    bce.ProxyConnectionError,
    bce.SSLError,
)
_SIG_PATTERNS = re.compile(
    r"(X-Amz-Signature=|Signature=|X-Amz-Credential=|Credential=)[^&\s,\"']*", re.IGNORECASE
)
_DELETE_BATCH = 1000  # DeleteObjects maximum


class S3Store(ObjectStore):
    """Objects in one S3 bucket; blocking boto3 calls run in worker threads."""

    backend_name = "s3"

    def __init__(self, settings: S3Settings, *, url_ttl_s: int = 3600) -> None:
        if not 1 <= url_ttl_s <= MAX_PRESIGN_TTL_S:
            raise ValueError(f"url_ttl_s must be 1..{MAX_PRESIGN_TTL_S}")
        self.settings = settings
        self.bucket = settings.bucket
        self.url_ttl_s = url_ttl_s
        config = Config(
            signature_version="s3v4",
            region_name=settings.region,
            s3={"addressing_style": settings.addressing_style},
            retries={"max_attempts": settings.max_attempts, "mode": "standard"},
            connect_timeout=settings.connect_timeout_s,
            read_timeout=settings.read_timeout_s,
            max_pool_connections=16,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        # A private session: never falls back to ~/.aws or AWS_* env for credentials.
        session = boto3.session.Session()
        self._client = session.client(
            "s3",
            endpoint_url=settings.endpoint_url,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            region_name=settings.region,
            config=config,
        )
        self._transfer = TransferConfig(
            multipart_threshold=settings.multipart_threshold_bytes,
            multipart_chunksize=settings.multipart_threshold_bytes,
            max_concurrency=4,
            use_threads=True,
        )

    def __repr__(self) -> str:
        return f"S3Store(bucket={self.bucket!r}, endpoint={self.settings.endpoint_host!r})"

    @property
    def client(self) -> Any:
        """The underlying boto3 client (for tests and tooling)."""
        return self._client

    # -- error mapping -------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        """Remove credential values and signatures from a server/botocore message."""
        for secret in (self.settings.secret_access_key, self.settings.access_key_id):
            if secret:
                text = text.replace(secret, "***")
        return _SIG_PATTERNS.sub(lambda m: m.group(1) + "***", text)

    def _error(self, exc: BaseException, op: str, key: str | None = None) -> StorageError:
        where = f"s3://{self.bucket}/{key}" if key is not None else f"bucket {self.bucket!r}"
        host = self.settings.endpoint_host
        # upload_fileobj wraps the ClientError in S3UploadFailedError: look down the chain.
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, (bce.ClientError, *_NETWORK_ERRORS)):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, bce.ClientError):
            error = cause.response.get("Error", {}) or {}
            code = str(error.get("Code") or "")
            status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            # R2 answers a malformed key id with 400 InvalidArgument "Credential access key ...".
            bad_key_arg = code == "InvalidArgument" and "credential" in str(
                error.get("Message") or ""
            ).lower()
            if code in _CREDENTIAL_CODES or bad_key_arg:
                return StorageError(
                    f"S3 at {host} rejected the credentials ({code}) during {op} on {where}: "
                    f"check {ENV_ACCESS_KEY} / {ENV_SECRET_KEY}",
                    code="credentials",
                )
            if code == "NoSuchBucket" or (op == "check" and status == 404):
                return StorageError(
                    f"S3 bucket {self.bucket!r} does not exist at {host}", code="no_such_bucket"
                )
            if key is not None and (code in _NOT_FOUND_CODES or status == 404):
                return ObjectNotFound(f"object not found: {where}")
            if code in _DENIED_CODES or status == 403:
                # HEAD responses have no body, so the code is just "403": say both causes.
                reason = code if code and not code.isdigit() else "Forbidden"
                return StorageError(
                    f"S3 at {host} denied {op} on {where} (HTTP 403 {reason}): the credentials "
                    f"in {ENV_ACCESS_KEY} / {ENV_SECRET_KEY} are wrong or lack permission for "
                    "this bucket",
                    code="denied",
                )
            message = self._scrub(str(error.get("Message") or ""))
            return StorageError(
                f"S3 {op} on {where} at {host} failed: {code or 'error'} (HTTP {status})"
                + (f": {message}" if message else ""),
                code="s3_error",
            )
        if isinstance(cause, _NETWORK_ERRORS):
            return StorageError(
                f"cannot reach S3 endpoint {host} during {op} on {where}: "
                f"{type(cause).__name__} (after {self.settings.max_attempts} attempt(s))",
                code="unreachable",
            )
        if isinstance(exc, bce.NoCredentialsError):
            return StorageError(
                f"no S3 credentials: set {ENV_ACCESS_KEY} / {ENV_SECRET_KEY}", code="credentials"
            )
        return StorageError(
            f"S3 {op} on {where} at {host} failed: {type(exc).__name__}: {self._scrub(str(exc))}",
            code="s3_error",
        )

    async def _call(self, op: str, key: str | None, fn, *args, **kwargs):
        """Run a blocking boto3 call in a thread and translate its errors.

        ``from None``: the botocore exception stays out of the traceback; the message already
        carries code, status, bucket and host.
        """
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except (bce.BotoCoreError, bce.ClientError, Boto3Error) as exc:
            raise self._error(exc, op, key) from None

    # -- operations ----------------------------------------------------------------------

    def _put_sync(self, key: str, data: bytes, content_type: str, metadata: dict[str, str]) -> None:
        if len(data) >= self.settings.multipart_threshold_bytes:
            self._client.upload_fileobj(
                io.BytesIO(data),
                self.bucket,
                key,
                ExtraArgs={"ContentType": content_type, "Metadata": metadata},
                Config=self._transfer,
            )
        else:
            self._client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=content_type, Metadata=metadata
            )

    async def put(
        self,
        key: str,
        data: bytes,
        content_type: str,
        metadata: dict[str, str] | None = None,
    ) -> None:
        data, meta = self._checked_put(key, data, content_type, metadata)
        await self._call("put", key, self._put_sync, key, data, content_type, meta)

    def _get_sync(self, key: str) -> bytes:
        response = self._client.get_object(Bucket=self.bucket, Key=key)
        with response["Body"] as body:
            return body.read()

    async def get(self, key: str) -> bytes:
        validate_key(key)
        return await self._call("get", key, self._get_sync, key)

    def _head_sync(self, key: str) -> dict[str, Any] | None:
        try:
            return self._client.head_object(Bucket=self.bucket, Key=key)
        except bce.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code") or "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _NOT_FOUND_CODES or status == 404:
                return None
            raise

    async def exists(self, key: str) -> bool:
        """Note: HEAD has no error body, so a missing *bucket* also reads as ``False``."""
        validate_key(key)
        return await self._call("head", key, self._head_sync, key) is not None

    async def head(self, key: str) -> ObjectInfo:
        validate_key(key)
        response = await self._call("head", key, self._head_sync, key)
        if response is None:
            raise ObjectNotFound(f"object not found: s3://{self.bucket}/{key}")
        return ObjectInfo(
            key=key,
            size=int(response.get("ContentLength") or 0),
            content_type=response.get("ContentType") or DEFAULT_CONTENT_TYPE,
            metadata=dict(response.get("Metadata") or {}),
            etag=response.get("ETag"),
        )

    async def delete(self, key: str) -> None:
        validate_key(key)
        await self._call(
            "delete", key, lambda: self._client.delete_object(Bucket=self.bucket, Key=key)
        )

    def _list_sync(self, prefix: str) -> list[str]:
        keys: list[str] = []
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []) or [])
        return sorted(keys)

    async def list(self, prefix: str = "") -> list[str]:
        validate_prefix(prefix)
        return await self._call("list", None, self._list_sync, prefix)

    def _delete_prefix_sync(self, prefix: str) -> int:
        keys = self._list_sync(prefix)
        deleted = 0
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            response = self._client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise StorageError(
                    f"S3 delete_prefix {prefix!r} in bucket {self.bucket!r}: {len(errors)} "
                    f"object(s) not deleted (first: {first.get('Key')!r}: {first.get('Code')})",
                    code="s3_error",
                )
            deleted += len(batch)
        return deleted

    async def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix, allow_empty=False)
        return await self._call("delete_prefix", None, self._delete_prefix_sync, prefix)

    def signed_url(self, key: str, ttl_s: int | None = None) -> str:
        validate_key(key)
        ttl = self.url_ttl_s if ttl_s is None else int(ttl_s)
        if not 1 <= ttl <= MAX_PRESIGN_TTL_S:
            raise ValueError(f"ttl_s must be 1..{MAX_PRESIGN_TTL_S} (S3 presign limit)")
        try:
            return self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=ttl
            )
        except bce.BotoCoreError as exc:
            raise self._error(exc, "presign", key) from None

    def signed_put_url(self, key: str, ttl_s: int, content_type: str) -> str:
        """A presigned PUT for one object (SignedUploads): the client must send this Content-Type."""
        validate_key(key)
        if not 1 <= int(ttl_s) <= MAX_PRESIGN_TTL_S:
            raise ValueError(f"ttl_s must be 1..{MAX_PRESIGN_TTL_S} (S3 presign limit)")
        try:
            return self._client.generate_presigned_url(
                "put_object", Params={"Bucket": self.bucket, "Key": key, "ContentType": content_type},
                ExpiresIn=int(ttl_s),
            )
        except bce.BotoCoreError as exc:
            raise self._error(exc, "presign", key) from None

    async def check(self) -> None:
        """Prove the bucket exists and the credentials can list it.

        ListObjectsV2 rather than HeadBucket: HEAD error responses have no body, so a bad
        secret and a missing permission would both be a bare 403; a GET names the cause
        (SignatureDoesNotMatch, InvalidAccessKeyId, NoSuchBucket).
        """
        await self._call(
            "check",
            None,
            lambda: self._client.list_objects_v2(Bucket=self.bucket, MaxKeys=1),
        )

    def close(self) -> None:
        self._client.close()
