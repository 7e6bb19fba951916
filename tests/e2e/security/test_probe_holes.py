"""The holes that probing the running dev stack found (issue 16), checked on the real stack: resume
ids out of range, streams of finished jobs that never ended, what /health and error texts showed,
links built from the Host header, loose numbers and empty text. One shared song; cheap."""

from __future__ import annotations

import re

import httpx
import pytest

pytestmark = pytest.mark.serve

SONG = {"prompt": "lofi, piano", "lyrics": "[verse]\nsoft rain", "audio_duration": 10.0, "infer_step": 1}
ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:[\w.-]+/)+[\w.-]*")
FORGED = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}


@pytest.fixture(scope="module")
def job(stored_song) -> dict:
    return stored_song


def events(client, job_id: str, headers: dict | None = None, query: str = "") -> httpx.Response:
    return client.get(f"/v1/songs/{job_id}/events{query}", headers=headers or {}, timeout=15)


# -- 1. resume ids ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [str(2**31), str(2**63), "9" * 40])
def test_a_resume_id_out_of_range_is_a_422_before_the_stream(client, job, value):
    r = events(client, job["id"], {"Last-Event-ID": value})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/json")
    assert "last-event-id" in r.json()["message"].lower()
    r = events(client, job["id"], query=f"?after={value}")
    assert r.status_code == 422 and "after" in r.json()["message"]


# -- 2. finished jobs' streams end ------------------------------------------------------------


def test_resuming_a_finished_song_at_its_last_event_is_a_204(client, job):
    last = client.get(f"/v1/songs/{job['id']}").json()["last_event_seq"]
    for headers in ({"Last-Event-ID": str(last)}, {"Last-Event-ID": str(last + 50)}):
        r = events(client, job["id"], headers)  # a 15 s timeout: the old stream never ended
        assert r.status_code == 204 and r.content == b""


def test_resuming_just_before_the_end_sends_the_last_event_and_closes(client, job):
    last = client.get(f"/v1/songs/{job['id']}").json()["last_event_seq"]
    r = events(client, job["id"], {"Last-Event-ID": str(last - 1)})
    assert r.status_code == 200 and f"id: {last}\n" in r.text and '"succeeded"' in r.text


# -- 5. what anyone can read --------------------------------------------------------------------


def test_health_without_a_token_is_only_a_status(song_api):
    r = httpx.get(song_api["base_url"] + "/health", timeout=30)
    assert r.status_code in (200, 503) and set(r.json()) == {"status"}


def test_health_with_a_token_has_details_but_no_paths(song_api, client):
    r = client.get("/health")
    body = r.json()
    assert {"llm", "music", "cover", "storage", "jobs"} <= set(body["deployments"])
    assert song_api["storage_dir"] not in r.text and not ABSOLUTE_PATH.search(r.text), r.text


def test_an_upload_the_decoder_refuses_names_no_path(song_api, client):
    r = client.post("/v1/uploads", content=b"RIFF\x00\x00\x00\x00WAVEnot really", headers={"Content-Type": "audio/wav"})
    assert r.status_code == 422
    assert song_api["storage_dir"] not in r.text and not ABSOLUTE_PATH.search(r.json()["message"]), r.text


def test_a_song_record_names_no_storage_path(song_api, client, job):
    r = client.get(f"/v1/songs/{job['id']}")
    assert song_api["storage_dir"] not in r.text


# -- 6. links do not come from the Host header --------------------------------------------------


def test_a_forged_host_header_never_reaches_a_link(song_api, client, job):
    r = client.get(f"/v1/songs/{job['id']}", headers=FORGED)
    assert r.status_code == 200 and "evil.example" not in r.text
    song = r.json()["result"]
    assert song["audio_url"].startswith(song_api["base_url"] + "/files/")  # the loopback address it is bound to
    assert httpx.get(song["audio_url"], timeout=30).status_code == 200


# -- 7. strict bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/songs", "/generate-with-lyrics"])
@pytest.mark.parametrize(("field", "value"), [("seed", True), ("audio_duration", "30"), ("variations", 2.0),
                                              ("instrumental", "false")])
def test_numbers_and_booleans_are_strict(client, path, field, value):
    r = client.post(path, json={**SONG, field: value})
    assert r.status_code == 422 and field in r.json()["message"], r.text


@pytest.mark.parametrize("value", ["   ", "?!...", "\u200b\u200b\u2060"])
def test_a_prompt_with_nothing_to_sing_about_is_a_422(client, value):
    r = client.post("/v1/songs", json={**SONG, "prompt": value})
    assert r.status_code == 422 and "prompt" in r.json()["message"]
    r = client.post("/v1/songs", json={"full_described_song": value, "audio_duration": 10})
    assert r.status_code == 422 and "full_described_song" in r.json()["message"]
