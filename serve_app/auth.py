"""Bearer-token checks. Replicas hold only SHA-256 digests of the tokens, never the tokens."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass

from serve_app.credentials import MissingSecret
from serve_app.placeholders import is_placeholder

MIN_TOKEN_CHARS = 16


def digest(token: str) -> bytes:
    """SHA-256 of a bearer token: what replicas hold and compare instead of the token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def owner_digest(token: str) -> str:
    """The owner id jobs are stored under: the token's digest in hex (never the token)."""
    return digest(token).hex()


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
