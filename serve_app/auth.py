"""Bearer-token checks. Replicas hold only SHA-256 digests of the tokens, never the tokens.

Two kinds of caller (docs/tenants.md):
- admin tokens, listed in the environment (`API_BEARER_TOKEN`): owner = SHA-256 of the token, as
  always, so their songs keep their owner; no quotas;
- API keys, rows in the job database (`python -m serve_app.keys`): only the SHA-256 of the secret
  is stored; owner = `key_owner_digest(key id)`, so rotating the secret keeps the key's songs.

`Authenticator.resolve` answers both, caching key lookups for at most `ttl_s` (a few seconds),
which bounds how long a revoked key keeps working on any replica.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from serve_app.credentials import MissingSecret
from serve_app.placeholders import is_placeholder

MIN_TOKEN_CHARS = 16
KEY_SECRET_PREFIX = "ssk_"  # API key secrets: "ssk_" + 43 URL-safe characters (256 random bits)
_KEY_OWNER_DOMAIN = b"\x00songsmith-api-key\x00"  # no environment token can contain NUL

log = logging.getLogger(__name__)


def digest(token: str) -> bytes:
    """SHA-256 of a bearer token: what replicas hold and compare instead of the token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def owner_digest(token: str) -> str:
    """The owner id jobs are stored under: the token's digest in hex (never the token)."""
    return digest(token).hex()


def key_owner_digest(key_id: str) -> str:
    """The owner an API key's jobs are stored under: stable across rotations (it hashes the key's
    id, not its secret) and never equal to an environment token's owner (those hash a string that
    cannot hold the NUL this starts with)."""
    return hashlib.sha256(_KEY_OWNER_DOMAIN + key_id.encode("ascii")).hexdigest()


def new_key_secret() -> str:
    return KEY_SECRET_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class TokenDigests:
    digests: tuple[bytes, ...]

    def verify(self, presented: str | None) -> bool:
        """Constant time in the presented token and over every configured token (no early exit)."""
        if not presented:
            candidate = b"\0" * 32
        else:
            candidate = digest(presented)
        ok = 0
        for d in self.digests:
            ok |= hmac.compare_digest(candidate, d)
        return bool(ok) and bool(presented)


def load_tokens(env_var: str, *, generate_if_missing: bool) -> tuple[TokenDigests, str | None]:
    """Read comma-separated tokens from `env_var`; in dev, make one up when unset.

    Returns the digests and, only when a token was generated, that token (to print once).
    """
    raw = os.environ.get(env_var, "")
    tokens = [t.strip() for t in raw.split(",") if t.strip()]
    generated = None
    if not tokens:
        if not generate_if_missing:
            raise MissingSecret(f"{env_var} is not set: set one or more comma-separated bearer tokens")
        generated = secrets.token_urlsafe(24)
        tokens = [generated]
    for t in tokens:
        if is_placeholder(t) or len(t) < MIN_TOKEN_CHARS:
            raise MissingSecret(
                f"{env_var} holds a placeholder or a token shorter than {MIN_TOKEN_CHARS} characters; "
                "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
    return TokenDigests(tuple(digest(t) for t in tokens)), generated


def bearer_from_header(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


# -- callers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """Who made a request: `owner` is what their jobs are stored under (and their rate-limit key)."""

    owner: str
    key_id: str | None = None  # None: an admin token from the environment
    name: str | None = None

    @property
    def admin(self) -> bool:
        return self.key_id is None


class KeyLookup(Protocol):
    """What the authenticator needs from the key store (serve_app.jobs.keystore.KeyStore)."""

    def lookup(self, secret_digest: str) -> Any: ...  # an ApiKey (with .revoked) or None

    def touch(self, key_id: str, now: datetime | None = None, min_interval_s: float = 60.0) -> bool: ...


class Authenticator:
    """Environment tokens first (constant time, in memory), then API keys by the secret's digest.

    Key lookups (hits and misses) are cached per replica for `ttl_s`; nothing is cached longer, so
    a key revoked in the database is refused everywhere within `ttl_s`. `last_used_at` is written
    at most every `touch_interval_s` per key by this replica (and the store's conditional update
    keeps it to about that across replicas)."""

    def __init__(self, tokens: TokenDigests | None, keys: KeyLookup | None = None, *, ttl_s: float = 3.0,
                 touch_interval_s: float = 60.0, max_entries: int = 10_000,
                 clock=time.monotonic) -> None:
        if not 0 < ttl_s <= 5.0:
            raise ValueError("ttl_s must be in (0, 5]: a revoked key must be refused within seconds")
        self.tokens, self.keys, self.ttl_s = tokens, keys, float(ttl_s)
        self.touch_interval_s, self.max_entries, self.clock = float(touch_interval_s), max_entries, clock
        self._cache: dict[str, tuple[float, Caller | None]] = {}
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()

    def _admin(self, token: str) -> Caller | None:
        if self.tokens is not None and self.tokens.verify(token):
            return Caller(owner=owner_digest(token))
        return None

    def cached(self, token: str) -> tuple[bool, Caller | None]:
        """(found, caller) from memory only: admin tokens always, keys while their entry is fresh."""
        admin = self._admin(token)
        if admin is not None or self.keys is None or not token.startswith(KEY_SECRET_PREFIX):
            return True, admin
        entry = self._cache.get(owner_digest(token))
        if entry is not None and entry[0] > self.clock():
            return True, entry[1]
        return False, None

    def resolve_sync(self, token: str | None) -> Caller | None:
        """The caller a bearer token stands for, or None (unknown, revoked, malformed). Blocking."""
        if not token:
            return None
        found, caller = self.cached(token)
        if found:
            self._maybe_touch(caller)
            return caller
        secret_digest = owner_digest(token)
        key = self.keys.lookup(secret_digest)
        caller = None if key is None or key.revoked else Caller(owner=key.owner, key_id=key.id, name=key.name)
        with self._lock:
            if len(self._cache) >= self.max_entries:
                self._cache.clear()  # only costs lookups: no rate or quota state lives here
            self._cache[secret_digest] = (self.clock() + self.ttl_s, caller)
        self._maybe_touch(caller)
        return caller

    async def resolve(self, token: str | None) -> Caller | None:
        """`resolve_sync` without blocking the loop: memory hits answer inline, lookups on a thread."""
        if not token:
            return None
        found, caller = self.cached(token)
        if found and (caller is None or caller.admin or not self._touch_due(caller)):
            return caller
        return await asyncio.to_thread(self.resolve_sync, token)

    def _touch_due(self, caller: Caller) -> bool:
        last = self._touched.get(caller.key_id)
        return last is None or self.clock() - last >= self.touch_interval_s

    def _maybe_touch(self, caller: Caller | None) -> None:
        if caller is None or caller.admin or self.keys is None or not self._touch_due(caller):
            return
        with self._lock:
            if len(self._touched) >= self.max_entries:
                self._touched.clear()
            self._touched[caller.key_id] = self.clock()
        try:
            self.keys.touch(caller.key_id, min_interval_s=self.touch_interval_s)
        except Exception:  # noqa: BLE001 - bookkeeping must never fail a request
            log.warning("could not record the last use of API key %s", caller.key_id, exc_info=True)

    def forget(self) -> None:
        """Drop every cached lookup (tests; an operator's SIGHUP if ever wanted)."""
        with self._lock:
            self._cache.clear()
