"""Directory-backed object store for dev and tests, with HMAC-signed download links.

Layout under ``root`` (three sibling trees so object keys can never collide with bookkeeping):

- ``objects/<key>``     the bytes
- ``meta/<key>.json``   content type and user metadata (absent -> derived from extension)
- ``tmp/``              in-flight writes; same filesystem, so ``os.replace`` is atomic

Why signed links: production hands out S3 presigned URLs; locally the ingress serves
``/files/<key>?expires=..&sig=..`` and calls :meth:`LocalStore.verify`, which gives the same
"link works for a while, for one object only" behaviour without any S3 server.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from .base import (
    ObjectInfo,
    ObjectStore,
    content_type_for,
    validate_key,
    validate_prefix,
)
from .errors import LinkExpired, LinkInvalid, ObjectNotFound, StorageError

_EXPIRES_RE = re.compile(r"[0-9]{1,12}")
_SIG_RE = re.compile(r"[0-9a-f]{64}")


class LocalStore(ObjectStore):
    """Objects as files under ``root``; all blocking I/O runs in worker threads."""

    backend_name = "local"
    route_prefix = "/files"

    def __init__(
        self,
        root: str | os.PathLike[str],
        signing_secret: bytes,
        public_base_url: str | None = None,
        url_ttl_s: int = 3600,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not signing_secret:
            raise ValueError("signing_secret must not be empty")
        if url_ttl_s <= 0:
            raise ValueError("url_ttl_s must be positive")
        self.root = Path(root).expanduser().resolve()
        self._objects = self.root / "objects"
        self._meta = self.root / "meta"
        self._tmp = self.root / "tmp"
        self._secret = bytes(signing_secret)
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self.url_ttl_s = url_ttl_s
        self._clock = clock

    def __repr__(self) -> str:
        return f"LocalStore(root={str(self.root)!r})"

    # -- paths ---------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        """Map a key to its file, refusing anything that resolves outside ``objects/``.

        ``validate_key`` already rejects ``..``/absolute keys; the resolve check additionally
        catches symlinks inside the tree that point elsewhere.
        """
        validate_key(key)
        path = self._objects / key
        resolved = path.resolve()
        if not resolved.is_relative_to(self._objects.resolve()):
            raise ValueError(f"key resolves outside the storage root: {key!r}")
        return path

    def _meta_path(self, key: str) -> Path:
        return self._meta / (key + ".json")

    def path_for(self, key: str) -> Path:
        """The file that holds ``key`` (it may not exist); for tests and debugging."""
        return self._path(key)

    # -- writes --------------------------------------------------------------------------

    def _atomic_write(self, target: Path, data: bytes) -> None:
        self._tmp.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="put-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            # A concurrent delete_prefix may prune the parent between mkdir and replace.
            for attempt in range(3):
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.replace(tmp_name, target)
                    break
                except FileNotFoundError:
                    if attempt == 2:
                        raise
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise

    def _put_sync(self, key: str, data: bytes, content_type: str, metadata: dict[str, str]) -> None:
        path = self._path(key)
        meta = json.dumps({"content_type": content_type, "metadata": metadata}).encode()
        try:
            # Meta first: a reader that sees the new bytes also sees their content type.
            self._atomic_write(self._meta_path(key), meta)
            self._atomic_write(path, data)
        except OSError as exc:
            raise StorageError(
                f"local storage could not write {key!r}: {exc.strerror or type(exc).__name__}",
                code="io",
            ) from None

    async def put(
        self,
        key: str,
        data: bytes,
        content_type: str,
        metadata: dict[str, str] | None = None,
    ) -> None:
        data, meta = self._checked_put(key, data, content_type, metadata)
        await asyncio.to_thread(self._put_sync, key, data, content_type, meta)

    # -- reads ---------------------------------------------------------------------------

    def _get_sync(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"object not found: {key!r}") from None
        except OSError as exc:
            raise StorageError(
                f"local storage could not read {key!r}: {exc.strerror or type(exc).__name__}", code="io"
            ) from None

    async def get(self, key: str) -> bytes:
        validate_key(key)
        return await asyncio.to_thread(self._get_sync, key)

    async def exists(self, key: str) -> bool:
        validate_key(key)
        return await asyncio.to_thread(lambda: self._path(key).is_file())

    def _read_meta(self, key: str) -> dict:
        try:
            return json.loads(self._meta_path(key).read_bytes())
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return {}

    def content_type(self, key: str) -> str:
        """The stored content type of ``key`` (falls back to its extension)."""
        validate_key(key)
        return self._read_meta(key).get("content_type") or content_type_for(key)

    def metadata(self, key: str) -> dict[str, str]:
        """The user metadata stored with ``key`` ({} if none)."""
        validate_key(key)
        return dict(self._read_meta(key).get("metadata") or {})

    def _head_sync(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            size = path.stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"object not found: {key!r}") from None
        if not path.is_file():
            raise ObjectNotFound(f"object not found: {key!r}")
        meta = self._read_meta(key)
        return ObjectInfo(
            key=key,
            size=size,
            content_type=meta.get("content_type") or content_type_for(key),
            metadata=dict(meta.get("metadata") or {}),
        )

    async def head(self, key: str) -> ObjectInfo:
        validate_key(key)
        return await asyncio.to_thread(self._head_sync, key)

    # -- deletes / listing ---------------------------------------------------------------

    def _prune_dirs(self, start: Path, stop: Path) -> None:
        """Remove now-empty directories from ``start`` up to (not including) ``stop``."""
        current = start
        while current != stop and current.is_relative_to(stop):
            try:
                current.rmdir()
            except OSError:
                return
            current = current.parent

    def _delete_sync(self, key: str) -> bool:
        path = self._path(key)
        try:
            path.unlink()
            existed = True
        except FileNotFoundError:
            existed = False
        except IsADirectoryError:
            return False
        with contextlib.suppress(FileNotFoundError):
            self._meta_path(key).unlink()
        self._prune_dirs(path.parent, self._objects)
        self._prune_dirs(self._meta_path(key).parent, self._meta)
        return existed

    async def delete(self, key: str) -> None:
        validate_key(key)
        await asyncio.to_thread(self._delete_sync, key)

    def _list_sync(self, prefix: str) -> list[str]:
        head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self._objects / head if head else self._objects
        if not base.is_dir() or not base.resolve().is_relative_to(self._objects.resolve()):
            return []
        keys = []
        for dirpath, _dirnames, filenames in os.walk(base):
            rel_dir = Path(dirpath).relative_to(self._objects).as_posix()
            for name in filenames:
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    async def list(self, prefix: str = "") -> list[str]:
        validate_prefix(prefix)
        return await asyncio.to_thread(self._list_sync, prefix)

    async def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix, allow_empty=False)

        def run() -> int:
            return sum(self._delete_sync(key) for key in self._list_sync(prefix))

        return await asyncio.to_thread(run)

    # -- links ---------------------------------------------------------------------------

    def _signature(self, key: str, expires: int) -> str:
        message = f"v1\n{key}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def signed_url(self, key: str, ttl_s: int | None = None) -> str:
        validate_key(key)
        ttl = self.url_ttl_s if ttl_s is None else int(ttl_s)
        if ttl <= 0:
            raise ValueError("ttl_s must be positive")
        expires = int(self._clock()) + ttl
        path = f"{self.route_prefix}/{quote(key, safe='/')}"
        query = f"expires={expires}&sig={self._signature(key, expires)}"
        return f"{self.public_base_url or ''}{path}?{query}"

    def verify(self, key: str, expires: str | int, sig: str, *, now: float | None = None) -> Path:
        """Check a signed link and return the file to serve.

        ``key`` must be the URL path after ``/files/`` decoded exactly once (what a framework
        path parameter gives); it is never decoded again here, so ``%2e%2e`` stays a literal
        name and fails the signature. Raises ``LinkInvalid`` (malformed, unsafe or bad
        signature, checked before expiry so a forged link never reports "expired"),
        ``LinkExpired``, or ``ObjectNotFound``.
        """
        try:
            validate_key(key)
        except ValueError:
            raise LinkInvalid("invalid link: malformed key") from None
        expires_s = str(expires)
        if not _EXPIRES_RE.fullmatch(expires_s):
            raise LinkInvalid("invalid link: malformed expiry")
        if not isinstance(sig, str) or not _SIG_RE.fullmatch(sig.lower()):
            raise LinkInvalid("invalid link: malformed signature")
        expected = self._signature(key, int(expires_s))
        if not hmac.compare_digest(expected, sig.lower()):
            raise LinkInvalid("invalid link: bad signature")
        if (self._clock() if now is None else now) > int(expires_s):
            raise LinkExpired()
        try:
            path = self._path(key)
        except ValueError:
            raise LinkInvalid("invalid link: key escapes the storage root") from None
        if not path.is_file():
            raise ObjectNotFound(f"object not found: {key!r}")
        return path

    # -- health --------------------------------------------------------------------------

    def _check_sync(self) -> None:
        try:
            for directory in (self._objects, self._meta, self._tmp):
                directory.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=self._tmp, prefix="check-")
            try:
                os.write(fd, b"ok")
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(name)
        except OSError as exc:
            raise StorageError(
                f"local storage directory is not writable: {exc.strerror or type(exc).__name__}",
                code="io",
            ) from None

    async def check(self) -> None:
        await asyncio.to_thread(self._check_sync)
