"""Webhook signatures follow the Standard Webhooks spec: real deliveries (the sender POSTing to a
real HTTP server on 127.0.0.1) verify with the reference `standardwebhooks` package, tampering
fails, the webhook-id survives retries, the deprecated legacy header still verifies, and both
secret forms (plain text and `whsec_<base64>`) obey the one secret rule."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from serve_app.credentials import MIN_SECRET_CHARS, env_secret, secret_problem
from serve_app.jobs import JobStore, owner_digest
from serve_app.jobs.webhooks import (
    ID_HEADER,
    LEGACY_SIGNATURE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    TOLERANCE_S,
    WebhookSender,
    sign,
    signing_key,
    standard_secret,
    verify,
    verify_legacy,
)


class _Receiver(BaseHTTPRequestHandler):
    calls: list[tuple[dict[str, str], bytes]] = []
    statuses: list[int] = []  # answered in order, then 204

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        calls = type(self).calls
        calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
        statuses = type(self).statuses
        self.send_response(statuses[len(calls) - 1] if len(calls) <= len(statuses) else 204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    _Receiver.calls, _Receiver.statuses = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_port}/hook", calls=_Receiver.calls,
                          statuses=_Receiver.statuses)
    server.shutdown()
    server.server_close()


def _plain() -> tuple[bytes, str]:
    """(what the sender is configured with, as env_secret returns it; what a receiver is given)."""
    raw = secrets.token_urlsafe(32)
    return raw.encode(), standard_secret(raw)


def _standard() -> tuple[bytes, str]:
    whsec = standard_secret(os.urandom(32))
    return whsec.encode(), whsec


SECRET_FORMS = {"plain": _plain, "whsec": _standard}


class _FakeStore:
    def __init__(self):
        self.attempts = []

    def record_attempt(self, delivery_id, worker_id, **kw):
        self.attempts.append(kw)


@pytest.fixture
async def one_delivery(receiver):
    """One real delivery of a made-up finished job: (configured secret, receiver secret, headers, body)."""
    configured, whsec = _plain()
    sender = WebhookSender(_FakeStore(), configured, "worker-1")
    d = SimpleNamespace(id=7, job_id="ab" * 16, url=receiver.url, event="job.succeeded",
                        payload={"id": "ab" * 16, "status": "succeeded"}, attempts=0)
    try:
        await sender._deliver(d)
    finally:
        await sender.client.aclose()
    [(headers, body)] = receiver.calls
    return configured, whsec, headers, body


# -- real deliveries ---------------------------------------------------------------------------


@pytest.mark.parametrize("form", sorted(SECRET_FORMS))
async def test_real_deliveries_verify_with_standardwebhooks_and_keep_their_id_on_retry(tmp_path, receiver, form):
    """A real JobStore and sender: the first POST gets a 500, the retry a 204. Both verify with
    the reference library (given the secret's whsec_ form), carry the same webhook-id, and
    verify with our `verify`; another secret fails."""
    configured, whsec = SECRET_FORMS[form]()
    assert secret_problem("WEBHOOK_SIGNING_SECRET", configured) is None
    receiver.statuses.append(500)
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}", webhook_backoff_base_s=0.05, webhook_jitter=0.0)
    job = store.create(owner_digest("alice"), "lyrics", {"n": 1}, webhook_url=receiver.url)[0]
    store.claim("w1")
    assert store.finish(job.id, "w1", status="succeeded", result={"ok": True})
    sender = WebhookSender(store.webhooks, configured, "sender-1", poll_s=0.02)
    sender.start()
    try:
        deadline = time.monotonic() + 15
        while store.webhooks.deliveries(job.id)[0].status == "pending" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await sender.stop()
    try:
        [delivery] = store.webhooks.deliveries(job.id)
        attempts = store.webhooks.attempts(delivery.id)
    finally:
        store.close()
    assert delivery.status == "delivered" and [a.status_code for a in attempts] == [500, 204]
    assert len(receiver.calls) == 2, "expected a failing first attempt and a retry"

    reference = Webhook(whsec)
    ids = set()
    for attempt, (headers, body) in enumerate(receiver.calls, start=1):
        payload = reference.verify(body, headers)  # raises WebhookVerificationError if not
        assert payload["event"] == "job.succeeded" and payload["job"]["id"] == job.id
        assert payload["attempt"] == attempt
        assert abs(int(headers[TIMESTAMP_HEADER]) - time.time()) < 60
        assert headers[SIGNATURE_HEADER].startswith("v1,")
        assert verify(configured, headers, body)
        assert not verify(secrets.token_urlsafe(32), headers, body)
        with pytest.raises(WebhookVerificationError):
            Webhook(standard_secret(secrets.token_urlsafe(32))).verify(body, headers)
        ids.add(headers[ID_HEADER])
        assert payload["delivery_id"] == delivery.id
    assert ids == {f"msg_{job.id}_{delivery.id}"}  # one id for the delivery and its retry


async def test_the_legacy_header_is_still_sent_and_verifies_as_before(one_delivery):
    """Deprecated but kept: X-Songsmith-Signature, checked with the old receiver recipe."""
    configured, _, headers, body = one_delivery
    legacy = headers[LEGACY_SIGNATURE_HEADER.lower()]
    parts = dict(p.split("=", 1) for p in legacy.split(","))
    assert parts["t"] == headers[TIMESTAMP_HEADER]
    expected = hmac.new(configured, f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    assert verify_legacy(configured, legacy, body)
    assert not verify_legacy(configured, legacy, body + b" ")


# -- tampering and the timestamp window ---------------------------------------------------------


def _flip_signature(sig: str) -> str:
    raw = bytearray(base64.b64decode(sig.split(",", 1)[1]))
    raw[0] ^= 1
    return "v1," + base64.b64encode(bytes(raw)).decode()


TAMPER = {
    "body": lambda h, b: (h, b.replace(b'"job.succeeded"', b'"job.failed"')),
    "timestamp": lambda h, b: ({**h, TIMESTAMP_HEADER: str(int(h[TIMESTAMP_HEADER]) - 1)}, b),
    "signature": lambda h, b: ({**h, SIGNATURE_HEADER: _flip_signature(h[SIGNATURE_HEADER])}, b),
    "id": lambda h, b: ({**h, ID_HEADER: "msg_someone_else"}, b),
    "missing id": lambda h, b: ({k: v for k, v in h.items() if k != ID_HEADER}, b),
}


@pytest.mark.parametrize("what", list(TAMPER))
async def test_a_tampered_delivery_fails_verification(one_delivery, what):
    configured, whsec, headers, body = one_delivery
    assert verify(configured, headers, body) and Webhook(whsec).verify(body, headers)
    bad_headers, bad_body = TAMPER[what](headers, body)
    assert (bad_headers, bad_body) != (headers, body)
    assert not verify(configured, bad_headers, bad_body)
    with pytest.raises(WebhookVerificationError):
        Webhook(whsec).verify(bad_body, bad_headers)


@pytest.mark.parametrize("offset_s, ok", [(-TOLERANCE_S - 5, False), (TOLERANCE_S + 5, False),
                                         (-TOLERANCE_S + 30, True), (TOLERANCE_S - 30, True)])
async def test_the_timestamp_must_be_within_the_tolerance_window(one_delivery, offset_s, ok):
    """Correctly signed, but at a timestamp offset from now: only fresh ones pass (both verifiers)."""
    configured, whsec, headers, body = one_delivery
    ts = int(time.time()) + offset_s
    moved = {**headers, TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign(configured, headers[ID_HEADER], ts, body)}
    assert verify(configured, moved, body) is ok
    if ok:
        Webhook(whsec).verify(body, moved)
    else:
        with pytest.raises(WebhookVerificationError):
            Webhook(whsec).verify(body, moved)
    assert verify(configured, moved, body, now=ts) and not verify(configured, moved, body, now=ts + TOLERANCE_S + 1)


async def test_any_one_of_several_space_separated_signatures_may_match(one_delivery):
    """As the spec says: several signatures (key rotation, other versions); one valid v1 suffices."""
    configured, whsec, headers, body = one_delivery
    good = headers[SIGNATURE_HEADER]
    wrong = "v1," + base64.b64encode(bytes(32)).decode()
    other_version = "v1a," + base64.b64encode(bytes(64)).decode()  # asymmetric: ignored here
    several = {**headers, SIGNATURE_HEADER: f"{wrong} {other_version} {good}"}
    assert verify(configured, several, body)
    assert Webhook(whsec).verify(body, several)
    none_good = {**headers, SIGNATURE_HEADER: f"{wrong} {other_version} {_flip_signature(good)}"}
    assert not verify(configured, none_good, body)
    with pytest.raises(WebhookVerificationError):
        Webhook(whsec).verify(body, none_good)
    # The valid signature under a version other than v1 is not accepted; junk does not raise.
    assert not verify(configured, {**headers, SIGNATURE_HEADER: "v2," + good[3:]}, body)
    assert not verify(configured, {**headers, SIGNATURE_HEADER: "junk v1,!!! v1"}, body)
    assert not verify(configured, {**headers, TIMESTAMP_HEADER: "1e9"}, body)


# -- the secret ------------------------------------------------------------------------------------


def test_standard_secret_is_the_same_key_in_the_spec_format():
    raw = secrets.token_urlsafe(32)
    whsec = standard_secret(raw)
    assert whsec.startswith("whsec_") and base64.b64decode(whsec[6:]) == raw.encode()
    assert signing_key(raw) == signing_key(raw.encode()) == signing_key(whsec) == raw.encode()
    assert standard_secret(whsec) == whsec  # already in the spec format: unchanged
    body = b'{"event":"job.succeeded"}'
    assert sign(raw, "msg_1", 1_700_000_000, body) == sign(whsec, "msg_1", 1_700_000_000, body)
    # what the reference library computes from the whsec_ form (it would base64-decode a plain one)
    reference = Webhook(whsec)._whsecret
    assert reference == raw.encode()


def test_both_secret_forms_obey_the_one_rule():
    raw = "k" * MIN_SECRET_CHARS
    assert secret_problem("W", raw) is None
    assert secret_problem("W", standard_secret(raw)) is None  # 32 chars -> 44 base64 chars
    spec_minimum = "whsec_" + base64.b64encode(os.urandom(24)).decode()  # 24 bytes = 32 chars
    assert secret_problem("W", spec_minimum) is None
    assert env_secret("W", {"W": spec_minimum}) == spec_minimum.encode()
    assert signing_key(env_secret("W", {"W": spec_minimum})) == base64.b64decode(spec_minimum[6:])
    unpadded = standard_secret(os.urandom(32)).rstrip("=")
    assert secret_problem("W", unpadded) is None and signing_key(unpadded) == Webhook(unpadded)._whsecret
    # the prefix does not count towards the 32 characters
    short = "whsec_" + base64.b64encode(os.urandom(18)).decode()  # 24 chars after the prefix, 30 in all
    assert "at least 32 characters" in secret_problem("W", short)
    assert "at least 32 characters" in secret_problem("W", "whsec_" + "A" * 28)  # 34 in all
    # a whsec_ secret must be standard base64, or the receivers' libraries would read another key
    assert "base64" in secret_problem("W", "whsec_" + secrets.token_urlsafe(32).replace("A", "-") + "-_")
    with pytest.raises(ValueError):
        WebhookSender(_FakeStore(), b"whsec_" + b"-_" * 20, "worker-1")


async def test_every_request_carries_the_three_standard_headers_and_json(one_delivery):
    _, _, headers, body = one_delivery
    assert headers["content-type"] == "application/json"
    assert headers[ID_HEADER] == f"msg_{'ab' * 16}_7" and headers["x-songsmith-delivery"] == "7"
    assert headers[TIMESTAMP_HEADER].isdigit()
    assert json.loads(body) == {"event": "job.succeeded", "delivery_id": 7, "attempt": 1,
                                "job": {"id": "ab" * 16, "status": "succeeded"}}
