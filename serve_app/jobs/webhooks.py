"""Webhook delivery: signed POSTs of finished jobs, retried with backoff, every attempt recorded.

Signed per the Standard Webhooks spec (https://www.standardwebhooks.com/), so receivers can verify
with its reference libraries (docs/webhooks.md):

    webhook-id: msg_<job id>_<delivery id>      the same on every retry of a delivery
    webhook-timestamp: <unix seconds of this attempt>
    webhook-signature: v1,<base64 HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<raw body>")>

The key is the secret's bytes: for `whsec_<base64>` the decoded rest, for any other secret its
UTF-8 bytes (`standard_secret` gives the equivalent `whsec_` form to hand to receivers).

Deprecated, still sent alongside during the transition: `X-Songsmith-Signature: t=<unix seconds>,
v1=<hex HMAC-SHA256(secret as configured, "<t>.<raw body>")>`, exactly as before.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping

import httpx

from serve_app.credentials import STANDARD_SECRET_PREFIX, decode_standard_secret
from serve_app.redact import redact

from .errors import StoreUnavailable
from .records import WebhookDelivery
from .urlguard import WebhookTarget, WebhookUnresolvable, parse_webhook_url
from .webhook_store import WebhookStore

logger = logging.getLogger("ray.serve")

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
LEGACY_SIGNATURE_HEADER = "X-Songsmith-Signature"  # deprecated; see docs/webhooks.md
TOLERANCE_S = 300  # the Standard Webhooks reference libraries' window: 5 minutes either way


def signing_key(secret: str | bytes) -> bytes:
    """The HMAC key of a configured secret: a `whsec_` secret's base64-decoded rest, else its UTF-8 bytes
    (ValueError for a `whsec_` secret that is not base64)."""
    raw = secret.encode() if isinstance(secret, str) else bytes(secret)
    if raw.startswith(STANDARD_SECRET_PREFIX.encode()):
        return decode_standard_secret(raw.decode("ascii"))  # UnicodeDecodeError is a ValueError
    return raw


def standard_secret(raw: str | bytes) -> str:
    """The `whsec_<base64>` form of a secret (one already in that form is returned normalized):
    what to give a Standard Webhooks receiver, e.g. `Webhook(standard_secret(raw))`."""
    return STANDARD_SECRET_PREFIX + base64.b64encode(signing_key(raw)).decode()


def message_id(d: WebhookDelivery) -> str:
    """`webhook-id`: one per delivery, the same on its retries; unique across databases (random job ids)."""
    return f"msg_{d.job_id}_{d.id}"


def _mac(key: bytes, msg_id: str, timestamp: int | str, body: bytes) -> bytes:
    return hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()


def sign(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,<base64 HMAC-SHA256>` over `"{id}.{timestamp}.{body}"`."""
    return "v1," + base64.b64encode(_mac(signing_key(secret), msg_id, timestamp, body)).decode()


def sign_legacy(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The deprecated `X-Songsmith-Signature` value, keyed by the secret's text as configured (as before)."""
    key = secret if isinstance(secret, bytes) else secret.encode()
    mac = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def signature_headers(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Every signing header of one attempt: the Standard Webhooks three and the legacy one."""
    return {ID_HEADER: msg_id, TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, msg_id, timestamp, body),
            LEGACY_SIGNATURE_HEADER: sign_legacy(secret, timestamp, body)}


def verify(secret: str | bytes, headers: Mapping[str, str], body: bytes, *, now: float | None = None,
           tolerance_s: float = TOLERANCE_S) -> bool:
    """What a receiver does (and what the tests do), per the Standard Webhooks spec: the three headers
    are present, the timestamp is within `tolerance_s` of now, and one of the space-separated
    `v1,<base64>` signatures matches (constant-time compare; other versions are ignored)."""
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, ts, signatures = h.get(ID_HEADER), h.get(TIMESTAMP_HEADER, "").strip(), h.get(SIGNATURE_HEADER)
    if not msg_id or not signatures or not (ts.isascii() and ts.isdigit()):
        return False
    if abs((time.time() if now is None else now) - int(ts)) > tolerance_s:
        return False
    expected = _mac(signing_key(secret), msg_id, ts, body)
    ok = False
    for entry in signatures.split(" "):
        version, _, value = entry.partition(",")
        if version != "v1":
            continue
        try:
            candidate = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        ok |= hmac.compare_digest(expected, candidate)
    return ok


def verify_legacy(secret: str | bytes, header: str, body: bytes, *, now: float | None = None) -> bool:
    """The deprecated `X-Songsmith-Signature` check (MAC and timestamp freshness), for old receivers."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        ts = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - ts) > TOLERANCE_S:
        return False
    return hmac.compare_digest(sign_legacy(secret, ts, body), f"t={ts},v1={parts.get('v1', '')}")


class WebhookSender:
    def __init__(self, store: WebhookStore, secret: str | bytes, worker_id: str, *, poll_s: float = 1.0,
                 timeout_s: float = 10.0, url_guard=None):
        """`url_guard(url)` checks a destination before every attempt (raising PermissionError or
        ValueError); when it returns a `WebhookTarget` with addresses, the request goes to the
        address it checked (DNS is not asked again)."""
        signing_key(secret)  # a malformed whsec_ secret fails here, not on the first delivery
        self.store, self.secret, self.worker_id = store, secret, worker_id
        self.poll_s, self.url_guard = poll_s, url_guard
        # No kept-alive connections: a pinned connection is opened for one checked name only and
        # never reused for another name that happens to resolve to the same address.
        self.client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False,
                                        limits=httpx.Limits(max_keepalive_connections=0))
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        await self.client.aclose()

    async def _loop(self) -> None:
        while True:
            try:
                due = await asyncio.to_thread(self.store.claim_due, self.worker_id)
                for d, outcome in zip(due, await asyncio.gather(*(self._deliver(d) for d in due),
                                                                return_exceptions=True)):
                    if isinstance(outcome, Exception):  # recording the attempt failed: the lease expires, it is retried
                        logger.warning("webhook delivery %s: could not record its attempt: %s: %s", d.id,
                                       type(outcome).__name__, redact(str(outcome)))
                if due:
                    continue
            except StoreUnavailable:
                pass
            except Exception:  # noqa: BLE001
                logger.exception("webhook loop error")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_s)
            except asyncio.TimeoutError:
                pass

    async def _deliver(self, d: WebhookDelivery) -> None:
        body = json.dumps({"event": d.event, "delivery_id": d.id, "attempt": d.attempts + 1, "job": d.payload},
                          separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "songsmith-webhooks/1",
                   "X-Songsmith-Delivery": str(d.id),
                   **signature_headers(self.secret, message_id(d), int(time.time()), body)}
        status, error, give_up = None, None, False
        t0 = time.perf_counter()
        # Whatever goes wrong, the attempt is recorded: a delivery either succeeds, is retried with
        # backoff, or gives up; it never escapes to be claimed again unrecorded.
        try:
            target = await self.url_guard(d.url) if self.url_guard is not None else None
            if not isinstance(target, WebhookTarget):
                target = WebhookTarget(parse_webhook_url(d.url))
            url, pinned_headers, extensions = target.request()
            r = await self.client.post(url, content=body, headers={**headers, **pinned_headers},
                                       extensions=extensions)
            status = r.status_code
            if r.is_redirect:
                error = "redirects are not followed"
        except PermissionError as exc:  # refused destination: retrying will not help
            error, give_up = str(exc), True
        except WebhookUnresolvable as exc:  # DNS may answer later: the normal backoff
            error = str(exc)
        except (ValueError, httpx.InvalidURL) as exc:  # malformed: it will never be sendable
            error, give_up = f"{exc}"[:300], True
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {str(exc)[:200]}"
        except Exception as exc:  # noqa: BLE001 - anything else is one failed attempt, retried
            logger.exception("webhook delivery %s of job %s failed unexpectedly", d.id, d.job_id)
            error = f"{type(exc).__name__}: {redact(str(exc))[:200]}"
        duration_ms = int((time.perf_counter() - t0) * 1000)
        await asyncio.to_thread(self.store.record_attempt, d.id, self.worker_id, status_code=status,
                                error=error, duration_ms=duration_ms, give_up=give_up)
