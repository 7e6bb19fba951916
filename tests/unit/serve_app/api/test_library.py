"""The library: takes in one response, DELETE (idempotent, cancels a running song, 404 for others),
list filters by status and kind, musical controls recorded."""

from __future__ import annotations

import json

import pytest

from deployments.protocol import take_seed
from tests.unit.serve_app.api.conftest import AUTH, OTHER

BODY = {"prompt": "lofi, piano", "lyrics": "[verse]\nrain on the window", "audio_duration": 20}


async def done(client, stack, body) -> dict:
    job = (await client.post("/v1/songs", json=body, headers=AUTH)).json()
    await stack.runner.wait(job["id"], 5)
    return (await client.get(f"/v1/songs/{job['id']}", headers=AUTH)).json()


async def test_variations_share_words_and_cover_and_list_every_take(client, stack):
    job = await done(client, stack, {**BODY, "variations": 4, "seed": 100})
    song = job["result"]
    assert [t["seed"] for t in song["takes"]] == [take_seed(100, k) for k in range(4)] == [100, 101, 102, 103]
    assert song["r2_key"] == song["takes"][0]["r2_key"] and song["audio_url"] == song["takes"][0]["audio_url"]
    assert len({t["audio_url"] for t in song["takes"]}) == 4
    stored = {t["r2_key"]: await stack.store.get(t["r2_key"]) for t in song["takes"]}
    assert len(set(stored.values())) == 4  # four different files
    assert stack.models.calls.count("cover") == 1 and stack.models.calls.count("music") == 1
    assert stack.models.music_requests[-1].takes == 4


async def test_controls_are_passed_and_recorded_and_explicit_fields_win(client, stack):
    job = await done(client, stack, {"full_described_song": "a waltz", "audio_duration": 20, "bpm": 90,
                                     "timesignature": "3", "keyscale": "d MINOR", "vocal_language": "de"})
    req = stack.models.music_requests[-1]
    assert (req.bpm, req.keyscale, req.timesignature, req.vocal_language) == (90, "D minor", "3", "de")
    assert job["result"]["controls"] == {"bpm": 90, "keyscale": "D minor", "timesignature": "3", "vocal_language": "de"}
    manifest = json.loads(await stack.store.get(job["result"]["manifest_r2_key"]))
    assert manifest["music"]["bpm"] == 90 and manifest["music"]["keyscale"] == "D minor"


async def test_bpm_and_key_the_llm_proposes_are_used_unless_given(client, stack):
    real_tags = stack.models.tags

    async def tags_with_tempo(description, instrumental, seed=None):
        written = await real_tags(description, instrumental, seed=seed)
        written.tags += ["128 bpm", "A minor"]
        return written

    stack.models.tags = tags_with_tempo
    await done(client, stack, {"full_described_song": "a club track", "audio_duration": 20})
    assert (stack.models.music_requests[-1].bpm, stack.models.music_requests[-1].keyscale) == (128, "A minor")
    await done(client, stack, {"full_described_song": "a club track", "audio_duration": 20, "bpm": 100})
    assert (stack.models.music_requests[-1].bpm, stack.models.music_requests[-1].keyscale) == (100, "A minor")


@pytest.mark.parametrize(("field", "value", "words"), [
    ("bpm", 20, "bpm: Input should be greater than or equal to 30"),
    ("bpm", 301, "less than or equal to 300"),
    ("timesignature", "5", "timesignature: Input should be '2', '3', '4' or '6'"),
    ("vocal_language", "xx", "vocal_language: Input should be"),
    ("keyscale", "C dorian", "keyscale: Value error, must be a note"),
])
async def test_bad_controls_are_422s_naming_the_field(client, field, value, words):
    r = await client.post("/v1/songs", json={**BODY, field: value}, headers=AUTH)
    assert r.status_code == 422 and words in r.json()["message"], r.text


async def test_delete_removes_objects_and_record_idempotently_and_only_for_the_owner(client, stack):
    job = await done(client, stack, {**BODY, "variations": 2})
    folder = f"songs/{job['id']}/"
    assert len(await stack.store.list(folder)) == 4  # two takes, cover, manifest
    assert (await client.delete(f"/v1/songs/{job['id']}", headers=OTHER)).status_code == 404
    assert len(await stack.store.list(folder)) == 4
    assert (await client.delete(f"/v1/songs/{job['id']}", headers=AUTH)).status_code == 204
    assert await stack.store.list(folder) == []
    assert (await client.get(f"/v1/songs/{job['id']}", headers=AUTH)).status_code == 404
    assert job["id"] not in [j["id"] for j in (await client.get("/v1/songs", headers=AUTH)).json()["items"]]
    assert (await client.delete(f"/v1/songs/{job['id']}", headers=AUTH)).status_code == 204  # again: same answer
    assert (await client.delete(f"/v1/songs/{'d' * 32}", headers=AUTH)).status_code == 404


async def test_deleting_a_running_song_cancels_it_and_leaves_nothing(client, stack):
    gate = stack.models.gate("music:2")
    job = (await client.post("/v1/songs", json=BODY, headers=AUTH)).json()
    await gate.reached.wait()
    assert (await client.delete(f"/v1/songs/{job['id']}", headers=AUTH)).status_code == 204
    gate.release()
    final = await stack.runner.wait(job["id"], 5)
    assert final.status == "cancelled" and "music" in stack.models.cancelled
    assert await stack.store.list(f"songs/{job['id']}/") == []


async def test_a_song_deleted_during_its_last_step_leaves_no_objects(client, stack):
    gate = stack.models.gate("upload")  # not a model call: hold the store instead
    real_put = stack.store.put
    held = {"n": 0}

    async def slow_put(key, data, content_type, metadata=None):
        if key.endswith("manifest.json") and not held["n"]:
            held["n"] = 1
            await gate.pass_through()
        return await real_put(key, data, content_type, metadata)

    stack.store.put = slow_put
    job = (await client.post("/v1/songs", json=BODY, headers=AUTH)).json()
    await gate.reached.wait()
    stack.runner.cancel_local = lambda job_id: None  # too late to stop it: the runner must clean up
    assert (await client.delete(f"/v1/songs/{job['id']}", headers=AUTH)).status_code == 204
    gate.release()
    final = await stack.runner.wait(job["id"], 5)
    # Either the runner saw the tombstone after its last step, or its heartbeat saw the cancel
    # the delete also requested and stopped the song first: cancelled and nothing left either way.
    assert final.status == "cancelled" and final.error in ("deleted by its owner", "cancelled by the client")
    assert await stack.store.list(f"songs/{job['id']}/") == []


async def test_list_filters_by_status_and_kind(client, stack):
    ok = await done(client, stack, BODY)
    stack.models.failures["music"] = RuntimeError("boom")
    bad = await done(client, stack, {"full_described_song": "sea shanty", "audio_duration": 20})
    del stack.models.failures["music"]

    async def ids(query):
        r = await client.get(f"/v1/songs?{query}", headers=AUTH)
        assert r.status_code == 200, r.text
        return [j["id"] for j in r.json()["items"]]

    assert await ids("status=succeeded") == [ok["id"]]
    assert await ids("status=failed") == [bad["id"]]
    assert await ids("status=failed&status=succeeded") == [bad["id"], ok["id"]]
    assert await ids("mode=description") == [bad["id"]]
    assert await ids("mode=repaint") == []
    r = await client.get("/v1/songs?status=done", headers=AUTH)
    assert r.status_code == 422 and "status" in r.json()["message"]
