"""The backend-neutral object store interface, key rules and content types.

Why an async ABC: the ingress and job runner are asyncio code; backends do blocking I/O
(boto3, file writes) in ``asyncio.to_thread`` so one slow upload never stalls the event loop.
``signed_url`` stays synchronous because both implementations compute it locally (HMAC or
S3 SigV4 presign) without any network round trip.

Why strict key rules: the same key is a path on disk for the local backend and part of a URL
for both, so anything that could escape a directory or confuse a URL parser is rejected up
front, identically for every backend (a key accepted in dev is accepted in production).
"""

from __future__ import annotations

import abc
import mimetypes
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

MAX_KEY_BYTES = 1024  # S3's own limit on key length (UTF-8 bytes)

# Explicit table first: mimetypes depends on /etc/mime.types and maps .wav to audio/x-wav on
# many systems; the manifest and HTTP responses need stable, standard names.
_CONTENT_TYPES: dict[str, str] = {
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".json": "application/json",
    ".txt": "text/plain",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def content_type_for(filename: str) -> str:
    """Return the MIME type for a file name or key by its extension (case-insensitive)."""
    ext = os.path.splitext(filename)[1].lower()
    if ext in _CONTENT_TYPES:
        return _CONTENT_TYPES[ext]
    guessed, _ = mimetypes.guess_type("x" + ext) if ext else (None, None)
    return guessed or DEFAULT_CONTENT_TYPE


def _check_text(value: str, what: str) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a str, got {type(value).__name__}")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise ValueError(f"{what} is longer than {MAX_KEY_BYTES} bytes")
    if value.startswith("/"):
        raise ValueError(f"{what} must not start with '/': {value!r}")
    if "\\" in value:
        raise ValueError(f"{what} must not contain a backslash: {value!r}")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"{what} must not contain control characters: {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid UTF-8 (lone surrogate): {value!r}") from None


def validate_key(key: str) -> str:
    """Check an object key and return it unchanged; raise ``ValueError`` if it is unsafe.

    Rules: non-empty, at most 1024 UTF-8 bytes, no leading ``/``, no backslash, no control
    characters, and no empty, ``.`` or ``..`` path segments (so ``a//b``, ``a/./b``, ``a/``
    and ``../x`` are rejected: on disk they would alias or escape other keys).
    """
    _check_text(key, "key")
    if not key:
        raise ValueError("key must not be empty")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(f"key has an empty, '.' or '..' segment: {key!r}")
    return key


def validate_prefix(prefix: str, *, allow_empty: bool = True) -> str:
    """Check a listing/deletion prefix (a plain string prefix, as in S3).

    A prefix may end with ``/`` or stop mid-segment (``songs/ab`` matches ``songs/abc/x``),
    but follows the key rules otherwise. ``allow_empty=False`` is used by ``delete_prefix`` so
    a bug can never wipe a whole bucket.
    """
    _check_text(prefix, "prefix")
    if not prefix:
        if allow_empty:
            return prefix
        raise ValueError("prefix must not be empty")
    segments = prefix.split("/")
    # The last segment may be empty (trailing '/') or partial; inner ones follow key rules.
    for segment in segments[:-1]:
        if segment in ("", ".", ".."):
            raise ValueError(f"prefix has an empty, '.' or '..' segment: {prefix!r}")
    if segments[-1] in (".", ".."):
        raise ValueError(f"prefix has a '.' or '..' segment: {prefix!r}")
    return prefix


_METADATA_KEY = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]*")
MAX_METADATA_BYTES = 2048  # S3 limit for user metadata (keys + values)


def validate_content_type(content_type: str) -> str:
    """Check a MIME type is a plausible, header-safe value (no CR/LF, ASCII only)."""
    if not isinstance(content_type, str) or not content_type:
        raise ValueError("content_type must be a non-empty str")
    if len(content_type) > 255 or not _HEADER_VALUE.fullmatch(content_type) or "/" not in content_type:
        raise ValueError(f"invalid content_type: {content_type!r}")
    return content_type


def validate_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    """Check user metadata is portable across backends and return a copy.

    S3 sends it as ``x-amz-meta-*`` headers and lowercases the names, so names must be
    lowercase ``[a-z0-9-]`` and values printable ASCII, at most 2 KiB in total; the local
    backend enforces the same so nothing that works in dev breaks in production.
    """
    if not metadata:
        return {}
    total = 0
    out: dict[str, str] = {}
    for name, value in metadata.items():
        if not isinstance(name, str) or not _METADATA_KEY.fullmatch(name):
            raise ValueError(f"metadata name must match [a-z0-9][a-z0-9-]*: {name!r}")
        if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value):
            raise ValueError(f"metadata value for {name!r} must be printable ASCII")
        total += len(name) + len(value)
        out[name] = value
    if total > MAX_METADATA_BYTES:
        raise ValueError(f"metadata is larger than {MAX_METADATA_BYTES} bytes")
    return out


@dataclass(frozen=True)
class ObjectInfo:
    """What ``head`` returns: enough to answer an HTTP HEAD or fill a manifest entry."""

    key: str
    size: int
    content_type: str
    metadata: dict[str, str] = field(default_factory=dict)
    etag: str | None = None


class ObjectStore(abc.ABC):
    """Async object storage used for generated audio, cover art and song manifests.

    Semantics follow S3 so the local backend is a faithful stand-in: ``put`` overwrites,
    ``delete`` of a missing key is not an error, ``list``/``delete_prefix`` match a plain
    string prefix and return full keys, sorted.
    """

    backend_name: str = "abstract"

    @staticmethod
    def _checked_put(key: str, data: bytes, content_type: str, metadata: dict[str, str] | None):
        """The checks every backend's ``put`` makes first, so what local accepts R2 accepts too."""
        validate_key(key)
        validate_content_type(content_type)
        meta = validate_metadata(metadata)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        return bytes(data), meta

    @abc.abstractmethod
    async def put(
        self,
        key: str,
        data: bytes,
        content_type: str,
        metadata: dict[str, str] | None = None,
    ) -> None:
        """Store ``data`` under ``key`` (atomically replacing any previous object)."""

    @abc.abstractmethod
    async def get(self, key: str) -> bytes:
        """Return the object's bytes; raise ``ObjectNotFound`` if it does not exist."""

    @abc.abstractmethod
    async def exists(self, key: str) -> bool:
        """Return whether ``key`` exists."""

    @abc.abstractmethod
    async def head(self, key: str) -> ObjectInfo:
        """Return size, content type and metadata; raise ``ObjectNotFound`` if absent."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Delete ``key``; deleting a missing key succeeds (idempotent, like S3)."""

    @abc.abstractmethod
    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with ``prefix``; return how many were deleted.

        An empty prefix is refused (``ValueError``).
        """

    @abc.abstractmethod
    async def list(self, prefix: str = "") -> list[str]:
        """Return the sorted keys starting with ``prefix``."""

    @abc.abstractmethod
    def signed_url(self, key: str, ttl_s: int | None = None) -> str:
        """Return a time-limited GET URL for ``key`` (the store's default TTL if ``None``)."""

    @abc.abstractmethod
    async def check(self) -> None:
        """Health check: raise ``StorageError`` with an operator-readable message if unusable."""

    def close(self) -> None:  # noqa: B027 - optional hook, default does nothing
        """Release client resources (connection pools); the store must not be used after."""


@runtime_checkable
class SignedLinks(Protocol):
    """A store whose download links this service serves itself (the local backend; S3 presigns).

    The ingress mounts its `/files` route only for a store with this interface.
    """

    def verify(self, key: str, expires: str | int, sig: str) -> Path:
        """The file behind a valid, unexpired link; LinkExpired / LinkInvalid / ObjectNotFound otherwise."""
        ...

    def content_type(self, key: str) -> str: ...


@runtime_checkable
class SignedUploads(Protocol):
    """A store that can hand a client a time-limited PUT link (S3/R2 presigned), so a large audio
    file goes straight to storage instead of through the ingress. The uploads router offers
    `POST /v1/uploads/presign` only for a store with this interface."""

    def signed_put_url(self, key: str, ttl_s: int, content_type: str) -> str: ...
