"""/v1/songs/{id}/events: the whole story as SSE, ending at the terminal status, resumable."""

from __future__ import annotations

import json

from tests.unit.serve_app.api.conftest import AUTH

BODY = {"prompt": "lofi, piano", "lyrics": "[verse]\nrain", "audio_duration": 10}


def parse(text: str) -> list[dict]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        events.append({"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])})
    return events


async def test_the_stream_tells_every_change_and_ends_with_the_terminal_status(client, stack):
    job_id = (await client.post("/v1/songs", json=BODY, headers=AUTH)).json()["id"]
    r = await client.get(f"/v1/songs/{job_id}/events", headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = parse(r.text)
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))  # gap-free ids
    assert events[0]["data"]["data"] == {"status": "queued"}
    assert events[-1]["event"] == "status" and events[-1]["data"]["data"]["status"] == "succeeded"
    stages = [e["data"]["data"]["stage"] for e in events if e["event"] == "stage"]
    assert stages == ["painting", "composing", "encoding", "uploading"]
    steps = [e["data"]["data"]["step"] for e in events if e["event"] == "progress"]
    assert steps == [1, 2, 3, 4]


async def test_resuming_after_an_event_id_sends_only_what_came_after(client, stack):
    job_id = (await client.post("/v1/songs", json=BODY, headers=AUTH)).json()["id"]
    await stack.runner.wait(job_id, 5)
    full = parse((await client.get(f"/v1/songs/{job_id}/events", headers=AUTH)).text)
    tail = parse((await client.get(f"/v1/songs/{job_id}/events", headers={**AUTH, "Last-Event-ID": "3"})).text)
    assert tail == full[3:]
    query = parse((await client.get(f"/v1/songs/{job_id}/events?after=3", headers=AUTH)).text)
    assert query == full[3:]


async def test_a_negative_resume_id_is_a_422(client, stack):
    job_id = (await client.post("/v1/songs", json=BODY, headers=AUTH)).json()["id"]
    r = await client.get(f"/v1/songs/{job_id}/events?after=-1", headers=AUTH)
    assert r.status_code == 422 and "after" in r.json()["message"]


async def test_a_database_blip_mid_stream_is_ridden_out_and_the_stream_still_ends(client, stack, monkeypatch):
    from serve_app.jobs import StoreUnavailable

    job_id = (await client.post("/v1/songs", json=BODY, headers=AUTH)).json()["id"]
    await stack.runner.wait(job_id, 5)
    real, calls = stack.jobs.events, []

    def flaky(*args, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise StoreUnavailable("job store busy")
        return real(*args, **kw)

    monkeypatch.setattr(stack.jobs, "events", flaky)
    events = parse((await client.get(f"/v1/songs/{job_id}/events", headers=AUTH)).text)
    assert len(calls) >= 2 and events[-1]["data"]["data"]["status"] == "succeeded"
