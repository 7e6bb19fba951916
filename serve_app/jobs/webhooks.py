"""Webhook delivery: signed POSTs of finished jobs, retried with backoff, every attempt recorded.

Signature (Stripe-style, so receivers can reject replays): header
`X-Songsmith-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time

import httpx

from .errors import StoreUnavailable
from .records import WebhookDelivery
from .webhook_store import WebhookStore

logger = logging.getLogger("ray.serve")

SIGNATURE_HEADER = "X-Songsmith-Signature"
TOLERANCE_S = 300


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: bytes, header: str, body: bytes, *, now: float | None = None) -> bool:
    """What a receiver does (and what the tests do): check the MAC and the timestamp's freshness."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        ts = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((now or time.time()) - ts) > TOLERANCE_S:
        return False
    return hmac.compare_digest(sign(secret, ts, body), f"t={ts},v1={parts.get('v1', '')}")


class WebhookSender:
    def __init__(self, store: WebhookStore, secret: bytes, worker_id: str, *, poll_s: float = 1.0,
                 timeout_s: float = 10.0, url_guard=None):
        self.store, self.secret, self.worker_id = store, secret, worker_id
        self.poll_s, self.url_guard = poll_s, url_guard
        self.client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)
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
                await asyncio.gather(*(self._deliver(d) for d in due))
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
        ts = int(time.time())
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self.secret, ts, body),
                   "User-Agent": "songsmith-webhooks/1", "X-Songsmith-Delivery": str(d.id)}
        status, error, give_up = None, None, False
        t0 = time.perf_counter()
        try:
            if self.url_guard is not None:
                await self.url_guard(d.url)
            r = await self.client.post(d.url, content=body, headers=headers)
            status = r.status_code
            if r.is_redirect:
                error = "redirects are not followed"
        except PermissionError as exc:  # refused destination: retrying will not help
            error, give_up = str(exc), True
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {str(exc)[:200]}"
        duration_ms = int((time.perf_counter() - t0) * 1000)
        await asyncio.to_thread(self.store.record_attempt, d.id, self.worker_id, status_code=status,
                                error=error, duration_ms=duration_ms, give_up=give_up)
