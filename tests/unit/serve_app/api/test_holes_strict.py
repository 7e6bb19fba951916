"""Loose bodies (issue 16, item 7): numbers given as strings or booleans were accepted (`"seed":
true` rendered seed 1), and prompts or descriptions with nothing to sing about (only spaces,
punctuation or zero-width characters) were queued and rendered. Every request body is strict now
(a JSON int is still a valid float), and text needs a letter or a digit, in any script."""

from __future__ import annotations

import pytest

from tests.unit.serve_app.api.conftest import AUTH

SONG = "0123456789abcdef0123456789abcdef"
BODIES = {
    "/v1/songs": {"prompt": "lofi, piano", "lyrics": "[verse]\nrain", "audio_duration": 10},
    "/generate-with-lyrics": {"prompt": "lofi, piano", "lyrics": "[verse]\nrain", "audio_duration": 10},
    "/generate-from-description": {"full_described_song": "a sea shanty", "audio_duration": 10},
    "/generate-with-described-lyrics": {"prompt": "folk", "described_lyrics": "a surfing dog", "audio_duration": 10},
}
EDIT = {"task": "extend", "source": {"song_id": SONG}, "extend_s": 5}

LOOSE = [
    ("seed", True), ("seed", "5"), ("seed", 5.0), ("audio_duration", "30"), ("audio_duration", True),
    ("instrumental", 1), ("instrumental", "true"), ("guidance_scale", "7"), ("guidance_scale", False),
    ("infer_step", True), ("infer_step", "8"), ("variations", 2.0), ("variations", True), ("bpm", "120"),
]
NOTHING = ["   ", "!!!", "...,,,", "\u200b\u200b", " \u200b\u2060\ufeff ", "\u00a0", "-- ? --", "\u200d\u200c",
           "\U0001f3b5\U0001f3b6"]  # the last: music emoji only
SINGABLE = ["rain", "\u96e8", "42", "\u00e7a", "\u0434\u043e\u0436\u0434\u044c", "\u200bjazz\u200b"]


def text_fields(path: str) -> list[str]:
    return [k for k in ("prompt", "full_described_song", "described_lyrics") if k in BODIES[path]]


@pytest.mark.parametrize("path", sorted(BODIES))
async def test_numbers_and_booleans_must_be_json_numbers_and_booleans(client, path):
    for field, value in LOOSE:
        r = await client.post(path, json={**BODIES[path], field: value}, headers=AUTH)
        assert r.status_code == 422 and field in r.json()["message"], (field, value, r.text)


async def test_edit_bodies_are_strict_too(client):
    for field, value in [("seed", True), ("seed", "5"), ("extend_s", "5"), ("extend_s", True), ("variations", 1.0),
                         ("bpm", "90"), ("cover_strength", True), ("guidance_scale", "2"), ("infer_step", "8")]:
        r = await client.post("/v1/edits", json={**EDIT, field: value}, headers=AUTH)
        assert r.status_code == 422 and field in r.json()["message"], (field, value, r.text)
    for take in (True, "1", 1.0):  # the source's take too
        r = await client.post("/v1/edits", json={**EDIT, "source": {"song_id": SONG, "take": take}}, headers=AUTH)
        assert r.status_code == 422 and "take" in r.json()["message"], r.text


async def test_json_integers_are_still_valid_floats(client):
    body = {**BODIES["/v1/songs"], "audio_duration": 30, "guidance_scale": 7}
    assert (await client.post("/v1/songs", json=body, headers=AUTH)).status_code == 202


@pytest.mark.parametrize("path", sorted(BODIES))
async def test_text_with_nothing_to_sing_about_is_a_422_naming_the_field(client, path):
    for value in NOTHING:
        for field in text_fields(path):
            r = await client.post(path, json={**BODIES[path], field: value}, headers=AUTH)
            assert r.status_code == 422 and field in r.json()["message"], (field, value, r.text)
            assert "letter or digit" in r.json()["message"]


async def test_an_edit_prompt_with_nothing_to_sing_about_is_a_422(client):
    for value in NOTHING:
        r = await client.post("/v1/edits", json={**EDIT, "prompt": value}, headers=AUTH)
        assert r.status_code == 422 and "prompt" in r.json()["message"], (value, r.text)


async def test_text_in_any_script_is_fine(client):
    for value in SINGABLE:
        r = await client.post("/v1/songs", json={"full_described_song": value, "audio_duration": 10}, headers=AUTH)
        assert r.status_code == 202, r.text
