"""/v1/edits: an edit of a song or an upload is a new song job; everything checkable is checked
before it is queued (source, ownership, task vs checkpoint, ranges), each refusal naming the field."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf

from tests.unit.serve_app.api.conftest import AUTH, OTHER

SONG = {"prompt": "lofi, piano", "lyrics": "[verse]\nrain on the window", "audio_duration": 30, "variations": 2}


def wav(seconds: float, rate: int = 44_100, channels: int = 1) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, np.stack([tone] * channels, axis=1), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


async def finished_song(client, stack, body=SONG) -> dict:
    job = (await client.post("/v1/songs", json=body, headers=AUTH)).json()
    await stack.runner.wait(job["id"], 5)
    done = (await client.get(f"/v1/songs/{job['id']}", headers=AUTH)).json()
    assert done["status"] == "succeeded", done
    return done


async def edit(client, body, headers=AUTH):
    return await client.post("/v1/edits", json=body, headers=headers)


async def test_a_repaint_is_a_new_song_that_names_its_parent_and_keeps_its_words(client, stack):
    parent = await finished_song(client, stack)
    r = await edit(client, {"task": "repaint", "source": {"song_id": parent["id"], "take": 1},
                            "repaint_start_s": 5, "repaint_end_s": 10, "seed": 7})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["mode"] == "repaint" and job["parent_id"] == parent["id"] and job["id"] != parent["id"]
    await stack.runner.wait(job["id"], 5)
    done = (await client.get(f"/v1/songs/{job['id']}", headers=AUTH)).json()
    assert done["status"] == "succeeded"
    song = done["result"]
    assert song["mode"] == "repaint" and song["parent"] == {"song_id": parent["id"], "take": 1}
    assert song["title"] == f"{parent['result']['title']} (repaint)"
    assert song["duration_s"] == parent["result"]["takes"][1]["duration_s"]
    req = stack.models.music_requests[-1]
    assert (req.task, req.repaint_start_s, req.repaint_end_s, req.seed) == ("repaint", 5, 10, 7)
    assert req.source_audio == await stack.store.get(parent["result"]["takes"][1]["r2_key"])
    assert req.tags == "lofi, piano" and "rain on the window" in req.lyrics  # inherited
    # The parent's cover is kept, not painted again; the parent is untouched.
    assert await stack.store.get(song["cover_image_r2_key"]) == await stack.store.get(
        parent["result"]["cover_image_r2_key"])
    assert stack.models.calls.count("cover") == 1
    manifest = json.loads(await stack.store.get(song["manifest_r2_key"]))
    assert manifest["parent"] == {"song_id": parent["id"], "take": 1}
    assert manifest["edit"]["task"] == "repaint" and manifest["edit"]["repaint_end_s"] == 10
    again = (await client.get(f"/v1/songs/{parent['id']}", headers=AUTH)).json()
    assert again["result"] == parent["result"] | {k: again["result"][k] for k in ("audio_url", "cover_image_url")} \
        | {"takes": again["result"]["takes"]}
    edits = (await client.get(f"/v1/songs/{parent['id']}/edits", headers=AUTH)).json()
    assert [e["id"] for e in edits["items"]] == [job["id"]]


async def test_an_extend_renders_source_plus_extension(client, stack):
    parent = await finished_song(client, stack, {**SONG, "variations": 1})
    r = await edit(client, {"task": "extend", "source": {"song_id": parent["id"]}, "extend_s": 12.5,
                            "lyrics": "[outro]\nfade away"})
    assert r.status_code == 202, r.text
    await stack.runner.wait(r.json()["id"], 5)
    song = (await client.get(f"/v1/songs/{r.json()['id']}", headers=AUTH)).json()["result"]
    assert song["duration_s"] == pytest.approx(30 + 12.5)
    req = stack.models.music_requests[-1]
    assert req.task == "extend" and req.extend_s == 12.5 and req.duration_s == pytest.approx(42.5)
    assert req.lyrics.strip().endswith("fade away")


async def test_a_cover_of_an_upload_needs_tags_and_paints_a_cover(client, stack):
    up = (await client.post("/v1/uploads", content=wav(3.0), headers={**AUTH, "Content-Type": "audio/wav"})).json()
    r = await edit(client, {"task": "cover", "source": {"upload_id": up["upload_id"]}, "cover_strength": 0.4})
    assert r.status_code == 422 and r.json()["message"].startswith("prompt: required for task 'cover'")
    r = await edit(client, {"task": "cover", "source": {"upload_id": up["upload_id"]}, "cover_strength": 0.4,
                            "prompt": "jazz, brushes", "variations": 3})
    assert r.status_code == 202, r.text
    assert r.json()["parent_id"] is None
    await stack.runner.wait(r.json()["id"], 5)
    song = (await client.get(f"/v1/songs/{r.json()['id']}", headers=AUTH)).json()["result"]
    assert song["parent"] == {"upload_id": up["upload_id"]} and song["duration_s"] == pytest.approx(3.0)
    assert [t["take"] for t in song["takes"]] == [0, 1, 2] and len({t["r2_key"] for t in song["takes"]}) == 3
    assert stack.models.calls.count("cover") == 1 and stack.models.music_requests[-1].cover_strength == 0.4


@pytest.mark.parametrize(("body", "field", "words"), [
    ({"task": "repaint", "repaint_start_s": 31, "repaint_end_s": 40}, "repaint_start_s", "less than the source's length, 30.00 s"),
    ({"task": "repaint", "repaint_start_s": 5, "repaint_end_s": 31}, "repaint_end_s", "at most the source's length, 30.00 s"),
    ({"task": "extend", "extend_s": 580}, "extend_s", "at most 570.00 s can be added"),
    ({"task": "extract", "track_name": "vocals"}, "task", "needs a base (non-turbo) ACE-Step 1.5 checkpoint"),
    ({"task": "lego", "track_name": "drums"}, "task", "needs a base (non-turbo)"),
    ({"task": "complete", "complete_tracks": ["bass"]}, "task", "needs a base (non-turbo)"),
])
async def test_edits_the_source_or_the_checkpoint_cannot_do_are_422s_naming_the_field(client, stack, body, field,
                                                                                     words):
    parent = await finished_song(client, stack, {**SONG, "variations": 1})
    r = await edit(client, {**body, "source": {"song_id": parent["id"]}})
    assert r.status_code == 422, r.text
    assert r.json()["message"].startswith(f"{field}: ") and words in r.json()["message"]


@pytest.mark.parametrize(("body", "words"), [
    ({"task": "repaint", "repaint_start_s": 1}, "repaint_end_s is required for task 'repaint'"),
    ({"task": "repaint", "repaint_start_s": 5, "repaint_end_s": 4}, "repaint_end_s must be greater than"),
    ({"task": "extend"}, "extend_s is required"),
    ({"task": "cover", "extend_s": 3}, "extend_s applies to task extend only"),
    ({"task": "extract", "track_name": "kazoo"}, "track_name: Input should be 'woodwinds'"),
    ({"task": "morph"}, "task: Input should be 'cover'"),
    ({"task": "cover", "cover_strength": 1.5}, "cover_strength: Input should be less than or equal to 1"),
    ({"task": "cover", "keyscale": "H major"}, 'keyscale: Value error, must be a note'),
    ({"task": "cover", "variations": 5}, "variations: Input should be less than or equal to 4"),
])
async def test_malformed_edits_are_422s(client, stack, body, words):
    r = await edit(client, {**body, "source": {"song_id": "a" * 32}})
    assert r.status_code == 422 and words in r.json()["message"], r.text


async def test_a_base_checkpoint_allows_extract_lego_and_complete(client, stack):
    stack.models.base_model = True
    parent = await finished_song(client, stack, {**SONG, "variations": 1})
    r = await edit(client, {"task": "extract", "track_name": "vocals", "source": {"song_id": parent["id"]}})
    assert r.status_code == 202, r.text
    await stack.runner.wait(r.json()["id"], 5)
    req = stack.models.music_requests[-1]
    assert (req.task, req.track_name) == ("extract", "vocals")


async def test_another_tokens_or_an_unfinished_or_missing_source_is_refused(client, stack):
    parent = await finished_song(client, stack, {**SONG, "variations": 1})
    body = {"task": "cover", "source": {"song_id": parent["id"]}}
    r = await edit(client, body, headers=OTHER)
    assert (r.status_code, r.json()["message"]) == (404, "no such song (source)")
    r = await edit(client, {**body, "source": {"song_id": "b" * 32}})
    assert r.status_code == 404
    r = await edit(client, {**body, "source": {"upload_id": "c" * 32}, "prompt": "x"})
    assert (r.status_code, r.json()["message"]) == (404, "no such upload (source)")
    r = await edit(client, {**body, "source": {"song_id": parent["id"], "take": 2}})
    assert r.status_code == 422 and r.json()["message"].startswith("source.take: ")
    gate = stack.models.gate("music")
    running = (await client.post("/v1/songs", json={**SONG, "variations": 1}, headers=AUTH)).json()
    await gate.reached.wait()
    r = await edit(client, {**body, "source": {"song_id": running["id"]}})
    assert r.status_code == 409 and "only a succeeded song can be edited" in r.json()["message"]
    gate.release()
