"""Holes in /v1/songs/{id}/events found by probing the dev stack (issue 16, items 1 and 2):

- a resume id beyond the database's integer range crashed the stream after its 200 went out;
- resuming a finished job at (or after) its last event never ended: keep-alives and database
  polls forever, which is what every browser EventSource on a finished song does after the
  server closes the stream;
- an error inside the stream (after the headers) ended it silently;
- nothing bounded a stream's lifetime.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from serve_app.api.routes import events as events_route
from tests.unit.serve_app.api.conftest import AUTH

BODY = {"prompt": "lofi, piano", "lyrics": "[verse]\nrain", "audio_duration": 10}
LIMIT_S = 5.0  # every request below must be answered well within this


def blocks(text: str) -> list[dict]:
    out = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if fields:
            out.append(fields)
    return out


async def get(client, url, headers=None):
    return await asyncio.wait_for(client.get(url, headers={**AUTH, **(headers or {})}), LIMIT_S)


async def finished_job(client, stack) -> tuple[str, int]:
    job_id = (await client.post("/v1/songs", json=BODY, headers=AUTH)).json()["id"]
    job = await stack.runner.wait(job_id, 5)
    assert job.status == "succeeded"
    return job_id, job.last_event_seq


# -- 1. resume ids are validated before the stream starts ------------------------------------


@pytest.mark.parametrize("value", [str(2**31), str(2**63), "9" * 30])
async def test_a_last_event_id_beyond_the_column_range_is_a_422_naming_it(client, stack, value):
    job_id, _ = await finished_job(client, stack)
    r = await get(client, f"/v1/songs/{job_id}/events", {"Last-Event-ID": value})
    assert r.status_code == 422 and "last-event-id" in r.json()["message"].lower()


@pytest.mark.parametrize("value", [str(2**31), str(2**63), "9" * 30, "-1", "1.5", "abc"])
async def test_an_after_beyond_the_column_range_or_not_an_id_is_a_422_naming_it(client, stack, value):
    job_id, _ = await finished_job(client, stack)
    r = await get(client, f"/v1/songs/{job_id}/events?after={value}")
    assert r.status_code == 422 and "after" in r.json()["message"]


async def test_the_largest_valid_resume_id_is_accepted(client, stack):
    job_id, _ = await finished_job(client, stack)
    r = await get(client, f"/v1/songs/{job_id}/events", {"Last-Event-ID": str(2**31 - 1)})
    assert r.status_code == 204  # nothing after it, and the job is over


async def test_an_error_inside_the_stream_is_told_to_the_client_and_logged(client, stack, monkeypatch, caplog):
    job_id = (await client.post("/v1/songs", json=BODY, headers=AUTH)).json()["id"]
    await stack.runner.wait(job_id, 5)
    real, calls = stack.jobs.events, []

    def broken(*args, **kw):
        calls.append(1)
        if len(calls) == 1:
            return real(*args, **kw)[:2]  # two events, then the store breaks
        raise RuntimeError("boom at /srv/secret/jobs.db")

    monkeypatch.setattr(stack.jobs, "events", broken)
    with caplog.at_level(logging.ERROR, logger="ray.serve"):
        r = await get(client, f"/v1/songs/{job_id}/events")
    assert r.status_code == 200
    got = blocks(r.text)
    assert [b.get("event") for b in got][2:] == ["error"] and [int(b["id"]) for b in got[:2]] == [1, 2]
    error = json.loads(got[-1]["data"])
    assert "retry" in error["message"] and "/srv/secret" not in r.text  # no internals in the stream
    assert any(job_id in rec.getMessage() and rec.exc_info for rec in caplog.records)


# -- 2. finished jobs' streams end; every stream is bounded -----------------------------------


async def test_resuming_a_finished_job_at_its_last_event_is_a_204(client, stack):
    job_id, last = await finished_job(client, stack)
    for headers, query in (({"Last-Event-ID": str(last)}, ""), ({}, f"?after={last}"),
                           ({"Last-Event-ID": str(last + 1000)}, "")):
        r = await get(client, f"/v1/songs/{job_id}/events{query}", headers)
        assert r.status_code == 204 and r.content == b""


async def test_resuming_a_finished_job_before_its_end_sends_the_rest_and_closes(client, stack):
    job_id, last = await finished_job(client, stack)
    r = await get(client, f"/v1/songs/{job_id}/events", {"Last-Event-ID": str(last - 1)})
    assert r.status_code == 200
    (only,) = blocks(r.text)
    assert int(only["id"]) == last and json.loads(only["data"])["data"]["status"] == "succeeded"


async def test_a_stream_resumed_past_the_end_of_a_running_job_ends_when_the_job_does(client, stack):
    gate = stack.models.gate("music")
    job_id = (await client.post("/v1/songs", json=BODY, headers=AUTH)).json()["id"]
    await asyncio.wait_for(gate.reached.wait(), LIMIT_S)
    pending = asyncio.create_task(get(client, f"/v1/songs/{job_id}/events", {"Last-Event-ID": "100000"}))
    await asyncio.sleep(0.3)
    gate.release()
    r = await pending  # ends once the job is over, though no event is after 100000
    assert r.status_code == 200 and blocks(r.text) == []


async def test_every_stream_has_a_maximum_lifetime(client, stack, monkeypatch):
    monkeypatch.setattr(events_route, "MAX_STREAM_S", 0.6)
    gate = stack.models.gate("music")
    job_id = (await client.post("/v1/songs", json=BODY, headers=AUTH)).json()["id"]
    await asyncio.wait_for(gate.reached.wait(), LIMIT_S)
    try:
        r = await get(client, f"/v1/songs/{job_id}/events")
        assert r.status_code == 200
        got = blocks(r.text)
        assert got and got[-1].get("event") != "error"  # a plain close: EventSource reconnects with its id
        assert "retry: " in r.text
    finally:
        gate.release()


async def test_a_stream_with_nothing_new_for_too_long_ends(client, stack, monkeypatch):
    monkeypatch.setattr(events_route, "IDLE_LIMIT_S", 0.5)
    monkeypatch.setattr(events_route, "MAX_STREAM_S", 60.0)
    gate = stack.models.gate("music")
    job_id = (await client.post("/v1/songs", json=BODY, headers=AUTH)).json()["id"]
    await asyncio.wait_for(gate.reached.wait(), LIMIT_S)
    try:
        r = await get(client, f"/v1/songs/{job_id}/events")
        assert r.status_code == 200 and blocks(r.text)
    finally:
        gate.release()
