"""Oversized, malformed and unexpected request bodies are refused early and say why."""

from __future__ import annotations

import json

import httpx
import pytest

from serve_app.api.schemas import MAX_LYRICS_CHARS

pytestmark = pytest.mark.serve

TEN_MB = 10 * 1024 * 1024
BODY_PATHS = ["/generate-with-lyrics", "/v1/songs"]


def _big_json() -> bytes:
    """A syntactically valid 10 MB JSON body (the size alone must get it refused)."""
    pad = TEN_MB - 64
    return json.dumps({"prompt": "pop", "lyrics": "x" * pad}).encode()


def _assert_413(r: httpx.Response) -> None:
    assert r.status_code == 413, (r.status_code, r.text[:300])
    body = r.json()
    assert "exceeds" in body["detail"] and body["message"]


@pytest.mark.parametrize("path", BODY_PATHS)
def test_ten_megabytes_with_content_length_is_413(song_api, client, path):
    data = _big_json()
    r = client.post(path, content=data, headers={"Content-Type": "application/json"})
    assert r.request.headers["content-length"] == str(len(data))
    _assert_413(r)


@pytest.mark.parametrize("path", BODY_PATHS)
def test_ten_megabytes_chunked_without_content_length_is_413(song_api, client, path):
    data = _big_json()

    def chunks():
        for i in range(0, len(data), 64 * 1024):
            yield data[i:i + 64 * 1024]

    r = client.post(path, content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in r.request.headers
    assert r.request.headers["transfer-encoding"] == "chunked"
    _assert_413(r)


def test_oversized_body_is_refused_before_auth(song_api):
    """The size guard runs before anything else: no token needed to be told 413."""
    r = httpx.post(song_api["base_url"] + "/v1/songs", content=_big_json(),
                   headers={"Content-Type": "application/json"}, timeout=120)
    _assert_413(r)


def test_the_service_still_answers_after_oversized_bodies(client):
    assert client.post("/auth-status").status_code == 200


@pytest.mark.parametrize("path,base", [
    ("/generate-with-lyrics", {"prompt": "pop"}),
    ("/v1/songs", {"prompt": "pop"}),
])
def test_lyrics_over_the_limit_are_422_naming_lyrics(client, path, base):
    r = client.post(path, json={**base, "lyrics": "la " * (MAX_LYRICS_CHARS // 3 + 1)})
    assert r.status_code == 422, r.text
    payload = r.json()
    assert "lyrics" in payload["message"] and str(MAX_LYRICS_CHARS) in payload["message"]
    assert any("lyrics" in map(str, e["loc"]) for e in payload["detail"])


@pytest.mark.parametrize("path,body,field", [
    ("/generate-from-description", {"full_described_song": "d" * 2001}, "full_described_song"),
    ("/generate-with-described-lyrics", {"prompt": "pop", "described_lyrics": "d" * 2001}, "described_lyrics"),
    ("/v1/songs", {"prompt": "p" * 501}, "prompt"),
    ("/v1/songs", {"prompt": "pop", "webhook_url": "http://example.com/" + "a" * 2048}, "webhook_url"),
])
def test_long_descriptions_and_prompts_are_422_naming_the_field(client, path, body, field):
    r = client.post(path, json=body)
    assert r.status_code == 422, r.text
    assert field in r.json()["message"]


@pytest.mark.parametrize("path,body", [
    ("/generate-with-lyrics", {"prompt": "pop", "is_admin": True}),
    ("/generate-from-description", {"full_described_song": "x", "owner": "someone-else"}),
    ("/generate-with-described-lyrics", {"prompt": "pop", "described_lyrics": "x", "__proto__": {}}),
    ("/v1/songs", {"prompt": "pop", "status": "succeeded"}),
    ("/v1/songs", {"prompt": "pop", "id": "0" * 32}),
])
def test_unknown_fields_are_422_naming_them(client, path, body):
    r = client.post(path, json=body)
    assert r.status_code == 422, r.text
    unknown = (set(body) - {"prompt", "full_described_song", "described_lyrics"}).pop()
    assert unknown in r.json()["message"]


@pytest.mark.parametrize("raw,content_type", [
    (b"{", "application/json"),
    (b'{"prompt": "pop",}', "application/json"),
    (b"[1, 2, 3]", "application/json"),
    (b'"just a string"', "application/json"),
    (b"null", "application/json"),
    (b'{"prompt": "pop", "audio_duration": NaN}', "application/json"),
    (b'{"prompt": "pop", "audio_duration": Infinity}', "application/json"),
    (b'{"prompt": "pop", "seed": 1e400}', "application/json"),
    (b'{"prompt": "pop", "seed": 123456789012345678901234567890}', "application/json"),
    (b'{"prompt": ' * 5000 + b'"x"' + b"}" * 5000, "application/json"),  # deep nesting
    (b"\xff\xfe\x00{", "application/json"),  # not UTF-8
    (b"prompt=pop", "application/x-www-form-urlencoded"),
    (b"<xml/>", "text/xml"),
])
def test_malformed_bodies_are_4xx_never_5xx(client, raw, content_type):
    r = client.post("/v1/songs", content=raw, headers={"Content-Type": content_type})
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert r.json()["detail"] and r.json()["message"]


@pytest.mark.parametrize("value", ["a\u0000b", "\u001b[2J", "bell\u0007", "del\u007f"])
def test_control_characters_in_text_are_422(client, value):
    for path, body in [("/v1/songs", {"prompt": "pop", "lyrics": value}),
                       ("/generate-with-lyrics", {"prompt": value})]:
        r = client.post(path, json=body)
        assert r.status_code == 422, r.text
        assert "control characters" in r.json()["message"]


def test_unpaired_surrogates_are_422(client):
    raw = b'{"prompt": "pop", "lyrics": "\\ud800 alone"}'
    r = client.post("/v1/songs", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert "lyrics" in r.json()["message"]


@pytest.mark.parametrize("body", [
    {"prompt": "pop", "lyrics": "", "described_lyrics": "rain"},  # both lyrics fields
    {"full_described_song": "x", "lyrics": ""},  # description mode with a lyrics field
    {"full_described_song": "x", "prompt": "pop"},
    {"lyrics": "no tags"},
])
def test_mode_mixups_are_422_not_500(client, body):
    r = client.post("/v1/songs", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["message"]


def test_blank_idempotency_key_is_422(client):
    r = client.post("/v1/songs", json={"prompt": "pop", "audio_duration": 10, "infer_step": 1},
                    headers={"Idempotency-Key": ""})
    assert r.status_code == 422, r.text
    assert "idempotency-key" in r.json()["message"].lower()


@pytest.mark.parametrize("url,why", [
    ("", "webhook_url"),
    ("http://", "webhook_url"),
    ("http://user:secret@example.com/hook", "credentials"),
    ("ftp://example.com/hook", "webhook_url"),
    ("http://@example.com/hook", "credentials"),
    ("http://[::1/hook", "webhook_url"),
    ("http://example.com:99999/hook", "webhook_url"),
])
def test_bad_webhook_urls_are_422_with_a_message(client, url, why):
    r = client.post("/v1/songs", json={"prompt": "pop", "audio_duration": 10, "infer_step": 1, "webhook_url": url})
    assert r.status_code == 422, r.text
    body = r.json()
    assert why in body["message"] and body["detail"]
