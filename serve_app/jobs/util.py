"""Pure helpers: request hashing, pagination cursors, webhook backoff, timestamps, redaction."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import random
import re
from datetime import UTC, datetime
from typing import Any

from .errors import InvalidCursor

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_CURSOR_PREFIX = "j1."


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8 kept (raises on NaN/unserializable)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def request_hash(mode: str, request: dict[str, Any], webhook_url: str | None) -> str:
    """SHA-256 hex of the canonical JSON of mode + request + webhook_url (idempotency check)."""
    doc = {"mode": mode, "request": request, "webhook_url": webhook_url}
    return hashlib.sha256(canonical_json(doc).encode("utf-8")).hexdigest()


def is_owner_digest(value: str) -> bool:
    return isinstance(value, str) and bool(_HEX64.match(value))


def is_job_id(value: object) -> bool:
    return isinstance(value, str) and bool(_HEX32.match(value))


def encode_cursor(pk: int) -> str:
    """Opaque keyset cursor for ``list(before=...)``: URL-safe base64, no padding."""
    raw = f"{_CURSOR_PREFIX}{int(pk)}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> int:
    """Inverse of :func:`encode_cursor`; raises :class:`InvalidCursor` on anything else."""
    if not isinstance(cursor, str) or not cursor or len(cursor) > 64:
        raise InvalidCursor("invalid cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor("invalid cursor") from None
    if not raw.startswith(_CURSOR_PREFIX) or not raw[len(_CURSOR_PREFIX):].isdigit():
        raise InvalidCursor("invalid cursor")
    pk = int(raw[len(_CURSOR_PREFIX):])
    if pk <= 0 or pk >= 2**63:
        raise InvalidCursor("invalid cursor")
    return pk


def backoff_s(attempts_done: int, *, base_s: float, max_s: float, jitter: float = 0.0,
              rng: random.Random | None = None) -> float:
    """Delay before the next webhook try after ``attempts_done`` failures:
    ``min(max_s, base_s * 2**(attempts_done-1))``, times a uniform factor in ``[1-jitter, 1+jitter]``."""
    n = max(1, int(attempts_done))
    delay = min(max_s, base_s * math.pow(2.0, n - 1))
    if jitter > 0:
        delay *= (rng or random).uniform(1.0 - jitter, 1.0 + jitter)
    return max(0.0, delay)


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Aware UTC datetime; naive values are taken as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 UTC with milliseconds and a ``Z`` suffix, e.g. ``2026-05-09T07:35:25.123Z``."""
    if value is None:
        return None
    return as_utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def scrub(text: str, *secrets: str | None) -> str:
    """Replace every non-empty secret in ``text`` with ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


MAX_TEXT = 4000  # stored error strings are cut to this many characters


def truncate_text(value: str | None) -> str | None:
    if value is None:
        return None
    value = str(value)
    return value if len(value) <= MAX_TEXT else value[: MAX_TEXT - 1] + "…"
