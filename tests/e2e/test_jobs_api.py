"""Asynchronous song jobs over a real local Ray Serve: submit, poll, SSE, idempotency, cancel,
webhooks, per-token isolation and backpressure."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from serve_app.jobs.webhooks import ID_HEADER, LEGACY_SIGNATURE_HEADER, standard_secret, verify, verify_legacy

pytestmark = pytest.mark.serve

SHORT = {"prompt": "lofi, piano", "lyrics": "[verse]\nsoft rain", "audio_duration": 10.0, "infer_step": 2}
# Slow enough on the CPU kits (~0.3 s per step) to be caught mid-render.
LONG = {"prompt": "ambient", "lyrics": "[verse]\nlong night", "audio_duration": 240.0, "infer_step": 60}
TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="module")
def client(song_api):
    with httpx.Client(base_url=song_api["base_url"], timeout=120,
                      headers={"Authorization": f"Bearer {song_api['token']}"}) as c:
        yield c


def wait_for(client, job_id: str, statuses=TERMINAL, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/songs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not in {statuses} after {timeout}s: {job}")


def read_sse(client, job_id: str, last_event_id: int | None = None, limit: int | None = None) -> list[dict]:
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    events, current = [], {}
    with client.stream("GET", f"/v1/songs/{job_id}/events", headers=headers, timeout=300) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith(":"):
                continue
            if not line:
                if current:
                    events.append(current)
                    current = {}
                    if limit and len(events) >= limit:
                        break
                continue
            field, _, value = line.partition(": ")
            current[field] = value
    return [{"id": int(e["id"]), "event": e["event"], **json.loads(e["data"])} for e in events]


def test_submit_poll_and_fetch(client, song_api):
    r = client.post("/v1/songs", json={**SHORT, "audio_format": "flac"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/songs/{job['id']}"
    assert job["status"] in ("queued", "running") and job["mode"] == "lyrics"
    done = wait_for(client, job["id"])
    assert done["status"] == "succeeded", done
    song = done["result"]
    assert song["audio_format"] == "flac" and song["r2_key"].endswith("audio.flac")
    stored = (Path(song_api["storage_dir"]) / "objects" / song["r2_key"]).read_bytes()
    assert httpx.get(song["audio_url"]).content == stored
    assert done["started_at"] and done["finished_at"] and done["attempts"] == 1
    # Listing shows it, newest first.
    listed = client.get("/v1/songs", params={"limit": 5}).json()
    assert listed["items"][0]["id"] == job["id"]


def test_description_job_and_random_seed_is_fixed_per_job(client):
    r = client.post("/v1/songs", json={"full_described_song": "a jazzy tune about coffee", "audio_duration": 10,
                                       "infer_step": 1})
    done = wait_for(client, r.json()["id"])
    assert done["status"] == "succeeded" and done["mode"] == "description"
    assert done["result"]["seed"] >= 0 and done["request"]["seed"] == -1


def test_events_are_ordered_and_resume_with_last_event_id(client):
    job = client.post("/v1/songs", json={**SHORT, "infer_step": 4}).json()
    events = read_sse(client, job["id"])
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert events[0]["event"] == "status" and events[0]["data"]["status"] == "queued"
    assert events[-1]["event"] == "status" and events[-1]["data"]["status"] == "succeeded"
    stages = [e["data"]["stage"] for e in events if e["event"] == "stage"]
    assert stages.index("composing") < stages.index("uploading")
    steps = [e["data"]["step"] for e in events if e["event"] == "progress"]
    assert steps == [1, 2, 3, 4]
    # Reconnect after the third event: exactly the rest, nothing missed or repeated.
    rest = read_sse(client, job["id"], last_event_id=ids[2])
    assert [e["id"] for e in rest] == ids[3:]


def test_idempotency_key(client):
    key = os.urandom(8).hex()
    a = client.post("/v1/songs", json=SHORT, headers={"Idempotency-Key": key})
    b = client.post("/v1/songs", json=SHORT, headers={"Idempotency-Key": key})
    assert a.status_code == 202 and b.status_code == 200
    assert a.json()["id"] == b.json()["id"]
    c = client.post("/v1/songs", json={**SHORT, "seed": 5}, headers={"Idempotency-Key": key})
    assert c.status_code == 409
    wait_for(client, a.json()["id"])


def test_other_tokens_cannot_see_or_cancel(client, song_api):
    job = client.post("/v1/songs", json=SHORT).json()
    other = {"Authorization": f"Bearer {song_api['other_token']}"}
    assert client.get(f"/v1/songs/{job['id']}", headers=other).status_code == 404
    assert client.post(f"/v1/songs/{job['id']}/cancel", headers=other).status_code == 404
    assert client.get(f"/v1/songs/{job['id']}/events", headers=other).status_code == 404
    assert all(j["id"] != job["id"] for j in client.get("/v1/songs", headers=other).json()["items"])
    assert wait_for(client, job["id"])["status"] == "succeeded"


def test_bad_bodies_are_422(client):
    for body, field in [({"prompt": "x", "full_described_song": "y"}, "full_described_song"),
                        ({"audio_duration": 20}, "prompt"),
                        ({**SHORT, "webhook_url": "ftp://x"}, "webhook_url")]:
        r = client.post("/v1/songs", json=body)
        assert r.status_code == 422 and field in r.text, r.text
    assert client.get("/v1/songs/not-a-job-id").status_code == 422


def test_cancel_queued_and_running(client, song_api):
    # Fill this replica's 4 job slots with long songs, so the fifth waits in the queue.
    running = [client.post("/v1/songs", json={**LONG, "seed": i}).json()["id"] for i in range(4)]
    queued = client.post("/v1/songs", json=LONG).json()["id"]
    for jid in running:
        wait_for(client, jid, {"running"}, timeout=60)
    job = client.get(f"/v1/songs/{queued}").json()
    assert job["status"] == "queued" and job["queue_position"] >= 1
    r = client.post(f"/v1/songs/{queued}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"  # at once

    # Wait until one of them is mid-render, then cancel it: it stops within a step.
    deadline = time.monotonic() + 120
    rendering = None
    while rendering is None and time.monotonic() < deadline:
        for jid in running:
            j = client.get(f"/v1/songs/{jid}").json()
            if j["progress"] and (j["progress"]["step"] or 0) >= 1:
                rendering = jid
        time.sleep(0.2)
    assert rendering, "no song started rendering"
    t0 = time.monotonic()
    assert client.post(f"/v1/songs/{rendering}/cancel").status_code == 200
    done = wait_for(client, rendering, timeout=30)
    stop_s = time.monotonic() - t0
    assert done["status"] == "cancelled" and done["progress"]["step"] < 60
    for jid in running:
        client.post(f"/v1/songs/{jid}/cancel")
    for jid in running:
        assert wait_for(client, jid, timeout=60)["status"] == "cancelled"
    print(f"running song cancelled in {stop_s:.2f}s")
    # Nothing stored for cancelled songs, and the freed replica serves the next song promptly.
    for jid in running + [queued]:
        assert not (Path(song_api["storage_dir"]) / "objects" / "songs" / jid).exists()
    nxt = client.post("/v1/songs", json=SHORT).json()
    assert wait_for(client, nxt["id"], timeout=60)["status"] == "succeeded"


class _Receiver(BaseHTTPRequestHandler):
    calls: list = []
    fail_first = 1

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
        status = 500 if len(type(self).calls) <= type(self).fail_first else 204
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhook_signed_and_retried(client):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook"
        job = client.post("/v1/songs", json={**SHORT, "webhook_url": url}).json()
        assert wait_for(client, job["id"])["status"] == "succeeded"
        deadline = time.monotonic() + 30
        while len(_Receiver.calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(_Receiver.calls) == 2, "expected a failing first attempt and a retry"
        secret = os.environ["WEBHOOK_SIGNING_SECRET"]
        for headers, body in _Receiver.calls:  # Standard Webhooks, checked by the reference package
            assert Webhook(standard_secret(secret)).verify(body, headers)["job"]["id"] == job["id"]
            with pytest.raises(WebhookVerificationError):
                Webhook(standard_secret("another-secret-" * 3)).verify(body, headers)
            assert verify(secret, headers, body) and not verify("another-secret-" * 3, headers, body)
            assert verify_legacy(secret, headers[LEGACY_SIGNATURE_HEADER.lower()], body)  # deprecated, still sent
        assert _Receiver.calls[0][0][ID_HEADER] == _Receiver.calls[1][0][ID_HEADER]  # same id on the retry
        payload = json.loads(_Receiver.calls[1][1])
        assert payload["event"] == "job.succeeded" and payload["job"]["id"] == job["id"]
        assert payload["attempt"] == 2
    finally:
        server.shutdown()


def test_backpressure_429_with_retry_after(client):
    """3x the queue bound at once: each gets 202 or 429 (never a hang or 500); every 202 finishes."""
    bound = 8
    body = {**SHORT, "infer_step": 1}

    def submit(_):
        return client.post("/v1/songs", json=body)

    with cf.ThreadPoolExecutor(3 * bound) as pool:
        answers = list(pool.map(submit, range(3 * bound)))
    codes = [r.status_code for r in answers]
    assert set(codes) <= {202, 429}, codes
    assert 429 in codes and 202 in codes
    for r in answers:
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) >= 1
    for r in answers:
        if r.status_code == 202:
            assert wait_for(client, r.json()["id"], timeout=300)["status"] == "succeeded"
