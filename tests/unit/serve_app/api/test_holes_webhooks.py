"""Webhook URLs the HTTP client cannot send (issue 16, item 3), through the API and the real job
and webhook stores: refused at submit, and a stored one ends in a recorded, failed delivery."""

from __future__ import annotations

import asyncio

import pytest

from serve_app.auth import owner_digest
from tests.support.fakes import API_TOKEN
from tests.unit.serve_app.api.conftest import AUTH

BODY = {"prompt": "lofi, piano", "lyrics": "[verse]\nrain", "audio_duration": 10}
EDIT = {"task": "extend", "source": {"song_id": "0" * 32}, "extend_s": 5}


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/a\tb", "http://127.0.0.1:9/hook\n", "http://127.0.0.1:9/a b",
                                 " http://127.0.0.1:9/hook", "http://127.0.0.1:9\\@example.com/"])
@pytest.mark.parametrize("path", ["/v1/songs", "/v1/edits"])
async def test_submit_refuses_a_webhook_url_the_client_cannot_send_as_written(client, url, path):
    body = {**(BODY if path == "/v1/songs" else EDIT), "webhook_url": url}
    r = await client.post(path, json=body, headers=AUTH)
    assert r.status_code == 422 and "webhook_url" in r.json()["message"]


async def test_a_stored_unsendable_url_is_attempted_recorded_and_given_up(stack):
    job, _ = stack.jobs.create(owner_digest(API_TOKEN), "lyrics", {**BODY, "audio_duration": 10.0},
                               webhook_url="http://127.0.0.1:9/a\tb")  # from before the guard knew
    stack.runner.wake()
    await stack.runner.wait(job.id, 5)
    for _ in range(100):
        (delivery,) = stack.jobs.webhooks.deliveries(job.id) or [None]
        if delivery is not None and delivery.status != "pending":
            break
        await asyncio.sleep(0.05)
    assert delivery.status == "failed" and delivery.attempts == 1
    (attempt,) = stack.jobs.webhooks.attempts(delivery.id)
    assert attempt.status_code is None and "webhook_url" in attempt.error
