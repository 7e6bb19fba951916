"""The seed's HTTP API over a real local Ray Serve with the model kits and local storage."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
import soundfile as sf
from PIL import Image

pytestmark = pytest.mark.serve

SONG_KEYS = {
    "r2_key", "cover_image_r2_key", "categories", "song_id", "manifest_r2_key", "title", "tags", "lyrics",
    "instrumental", "seed", "duration_s", "sample_rate", "audio_format", "infer_step", "guidance_scale",
    "audio_url", "cover_image_url", "links_expire_in_s", "notes", "timings",
}


EXTENSIONS = {"wav": "wav", "flac": "flac", "mp3": "mp3", "opus": "ogg"}


@pytest.fixture(scope="module")
def client(song_api):
    with httpx.Client(
        base_url=song_api["base_url"], headers={"Authorization": f"Bearer {song_api['token']}"}, timeout=300
    ) as c:
        yield c


def stored(song_api, key: str) -> Path:
    """Where the local backend keeps an object (root/objects/<key>)."""
    return Path(song_api["storage_dir"]) / "objects" / key


def check_song(song_api, client, body: dict, song: dict) -> None:
    assert SONG_KEYS <= set(song), SONG_KEYS - set(song)
    assert 3 <= len(song["categories"]) <= 5
    fmt = body.get("audio_format", "wav")
    assert song["r2_key"] == f"songs/{song['song_id']}/audio.{EXTENSIONS[fmt]}"
    assert song["cover_image_r2_key"] == f"songs/{song['song_id']}/cover.png"
    # Audio: the stored bytes decode to the requested duration, 48 kHz stereo, in the requested format.
    audio_bytes = stored(song_api, song["r2_key"]).read_bytes()
    info = sf.info(io.BytesIO(audio_bytes))
    assert info.samplerate == 48000 and info.channels == 2
    assert abs(info.frames / info.samplerate - body["audio_duration"]) <= 1920 / 48000
    assert info.format == {"wav": "WAV", "flac": "FLAC", "mp3": "MP3", "opus": "OGG"}[fmt]
    # The signed link serves the same bytes with the right content type.
    r = httpx.get(song["audio_url"], timeout=30)
    assert r.status_code == 200 and r.content == audio_bytes
    assert r.headers["content-type"].startswith({"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg",
                                                  "opus": "audio/ogg"}[fmt])
    # Cover: a 512x512 PNG, also through its link.
    cover = httpx.get(song["cover_image_url"], timeout=30)
    assert cover.status_code == 200 and cover.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(cover.content))
    assert img.format == "PNG" and img.size == (512, 512)
    # Manifest matches the response.
    manifest = json.loads(stored(song_api, song["manifest_r2_key"]).read_text())
    for k in ("r2_key", "cover_image_r2_key", "categories", "title", "tags", "lyrics", "seed", "duration_s"):
        assert manifest["result"][k] == song[k], k
    assert manifest["music"]["seed"] == song["seed"]
    for k, v in body.items():
        assert manifest["request"][k] == v
    assert manifest["music"]["model"].endswith("acestep-v15-turbo-kit")
    # Nothing else lies under the song's prefix, and no temp files are left.
    files = sorted(p.name for p in stored(song_api, f"songs/{song['song_id']}").iterdir())
    assert files == sorted([Path(song["r2_key"]).name, "cover.png", "manifest.json"])
    tmp = Path(song_api["storage_dir"]) / "tmp"
    assert not tmp.exists() or not any(tmp.iterdir())


def test_health_needs_no_token_and_reports_every_deployment_to_a_key_holder(song_api):
    public = httpx.get(song_api["base_url"] + "/health", timeout=30)
    assert public.status_code == 200 and public.json() == {"status": "ok"}  # no details without a key
    r = httpx.get(song_api["base_url"] + "/health", timeout=30,
                  headers={"Authorization": f"Bearer {song_api['token']}"})
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert set(body["deployments"]) == {"llm", "music", "music_base", "cover", "storage", "jobs"}
    assert all(d["ready"] for d in body["deployments"].values())
    assert body["deployments"]["llm"]["detail"].endswith("(vllm)")  # the e2e stack's LLM runs on vLLM


def test_auth_status(song_api, client):
    r = client.post("/auth-status")
    assert r.status_code == 200 and r.json()["authenticated"] is True


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-000000000000"}, {"Authorization": "Basic abc"},
     {"Authorization": "Bearer"}],
    ids=["missing", "wrong", "wrong-scheme", "empty"],
)
def test_bad_tokens_are_401_with_bearer_challenge(song_api, headers):
    for path in ("/auth-status", "/generate-with-lyrics"):
        r = httpx.post(song_api["base_url"] + path, headers=headers, json={"prompt": "pop", "audio_duration": 10},
                       timeout=30)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert song_api["token"] not in r.text


def test_generate_from_description(song_api, client):
    body = {"full_described_song": "an upbeat synthwave song about driving at night", "audio_duration": 10.0,
            "seed": 1234}
    r = client.post("/generate-from-description", json=body)
    assert r.status_code == 200, r.text
    song = r.json()
    check_song(song_api, client, body, song)
    assert song["seed"] == 1234
    assert song["infer_step"] == 8 and song["guidance_scale"] == 1.0  # turbo recommendations
    assert song["lyrics"].startswith("[") and "[chorus]" in song["lyrics"]
    assert song["tags"] and song["title"]


def test_generate_with_lyrics_keeps_the_users_words(song_api, client):
    body = {"prompt": "electronic rap, 140BPM", "lyrics": "Hello city lights\nI run all night\n\nOh oh oh\nOh oh",
            "audio_duration": 12.0, "audio_format": "flac", "infer_step": 3, "guidance_scale": 15.0}
    r = client.post("/generate-with-lyrics", json=body)
    assert r.status_code == 200, r.text
    song = r.json()
    check_song(song_api, client, body, song)
    assert song["tags"] == ["electronic rap", "140bpm"]
    assert "Hello city lights" in song["lyrics"] and song["lyrics"].startswith("[verse]")
    assert song["infer_step"] == 3
    assert any("guidance_scale" in n for n in song["notes"])  # turbo ignores guidance, and says so


@pytest.mark.parametrize("fmt", ["mp3", "opus"])
def test_generate_with_described_lyrics_in_compressed_formats(song_api, client, fmt):
    body = {"prompt": "rave, funk, 140BPM, disco", "described_lyrics": "summer nights and dancing",
            "audio_duration": 10.0, "audio_format": fmt}
    r = client.post("/generate-with-described-lyrics", json=body)
    assert r.status_code == 200, r.text
    check_song(song_api, client, body, r.json())


def test_instrumental_has_no_lyrics_and_no_vocal_tags(song_api, client):
    body = {"full_described_song": "calm piano for studying, female vocal", "audio_duration": 10.0,
            "instrumental": True}
    r = client.post("/generate-from-description", json=body)
    assert r.status_code == 200, r.text
    song = r.json()
    check_song(song_api, client, body, song)
    assert song["lyrics"] == "" and "instrumental" in song["tags"]
    assert not any("vocal" in t for t in song["tags"])


def test_same_seed_same_audio(song_api, client):
    body = {"prompt": "lofi, piano", "lyrics": "[verse]\nla la", "audio_duration": 10.0, "seed": 7}
    a, b = (client.post("/generate-with-lyrics", json=body).json() for _ in range(2))
    assert a["song_id"] != b["song_id"]
    assert stored(song_api, a["r2_key"]).read_bytes() == stored(song_api, b["r2_key"]).read_bytes()
    c = client.post("/generate-with-lyrics", json={**body, "seed": 8}).json()
    assert stored(song_api, c["r2_key"]).read_bytes() != stored(song_api, a["r2_key"]).read_bytes()


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/generate-from-description", {"full_described_song": "x", "audio_duration": 5}, "audio_duration"),
        ("/generate-from-description", {"full_described_song": "x", "audio_duration": 601}, "audio_duration"),
        ("/generate-with-lyrics", {"prompt": "pop", "infer_step": 0}, "infer_step"),
        ("/generate-with-lyrics", {"prompt": "pop", "infer_step": 201}, "infer_step"),
        ("/generate-with-lyrics", {"prompt": "pop", "guidance_scale": 31}, "guidance_scale"),
        ("/generate-with-lyrics", {"prompt": "pop", "seed": -2}, "seed"),
        ("/generate-with-lyrics", {"prompt": "pop", "audio_format": "aiff"}, "audio_format"),
        ("/generate-with-lyrics", {"prompt": "pop", "lyrics": "x" * 5001}, "lyrics"),
        ("/generate-with-lyrics", {"lyrics": "no prompt"}, "prompt"),
        ("/generate-with-lyrics", {"prompt": "pop", "surprise": 1}, "surprise"),
        ("/generate-with-described-lyrics", {"prompt": "pop", "described_lyrics": ""}, "described_lyrics"),
        ("/generate-from-description", {"full_described_song": "d" * 2001}, "full_described_song"),
    ],
)
def test_bad_input_is_422_naming_the_field(client, path, body, field):
    r = client.post(path, json=body)
    assert r.status_code == 422, r.text
    payload = r.json()
    assert field in payload["message"]
    assert any(field in map(str, e["loc"]) for e in payload["detail"])


def test_range_errors_state_the_allowed_range(client):
    r = client.post("/generate-from-description", json={"full_described_song": "x", "audio_duration": 700})
    assert "600" in r.json()["message"]


def test_signed_links_reject_tampering(song_api, client):
    song = client.post("/generate-with-lyrics", json={"prompt": "pop", "audio_duration": 10}).json()
    url = httpx.URL(song["audio_url"])
    params = dict(url.params)
    forged = url.copy_with(params={**params, "sig": "0" * len(params["sig"])})
    assert httpx.get(forged).status_code == 403
    extended = url.copy_with(params={**params, "expires": str(int(params["expires"]) + 3600)})
    assert httpx.get(extended).status_code == 403
    other = httpx.URL(song["cover_image_url"]).copy_with(params=params)  # audio's signature on the cover key
    assert httpx.get(other).status_code == 403


def test_openapi_describes_every_field(client):
    spec = client.get("/openapi.json").json()
    for name in ("GenerateFromDescription", "GenerateWithLyrics", "GenerateWithDescribedLyrics"):
        props = spec["components"]["schemas"][name]["properties"]
        assert all(p.get("description") for p in props.values()), name
    assert client.get("/docs").status_code == 200


def _overlap(a: dict, b: dict) -> bool:
    return a["start_s"] < b["end_s"] and b["start_s"] < a["end_s"]


def test_fan_out_overlaps_stages(client):
    """Stage intervals are recorded by the deployments themselves; the song is its critical path."""
    body = {"full_described_song": "a folk song about a lighthouse keeper", "audio_duration": 20.0, "seed": 3}
    r = client.post("/generate-from-description", json=body)
    assert r.status_code == 200, r.text
    t = r.json()["timings"]
    assert {"tags", "lyrics", "music", "cover", "meta", "upload_audio", "upload_cover", "total"} <= set(t)
    # Tags, lyrics, title and categories are written concurrently (one batched LLM call).
    assert _overlap(t["tags"], t["lyrics"]) and _overlap(t["meta"], t["lyrics"]), t
    # The cover needs only the tags: it is painted while the lyrics or the music are still going
    # (which of the two depends on whether the tags or the lyrics were done first).
    assert _overlap(t["cover"], t["lyrics"]) or _overlap(t["cover"], t["music"]), t
    assert t["music"]["start_s"] >= max(t["tags"]["end_s"], t["lyrics"]["end_s"]) - 0.05
    assert _overlap(t["upload_audio"], t["upload_cover"]), t  # uploaded together
    stage_sum = sum(t[k]["seconds"] for k in ("tags", "lyrics", "music", "cover", "meta", "upload_audio", "upload_cover"))
    assert t["total"]["seconds"] < 0.9 * stage_sum, t


def test_fan_out_with_given_lyrics(client):
    """With tags and lyrics given, cover art and categories run beside the music from the start."""
    body = {"prompt": "folk, guitar", "lyrics": "[verse]\n" + "the keeper climbs the stairs\n" * 4,
            "audio_duration": 60.0, "infer_step": 12}
    t = client.post("/generate-with-lyrics", json=body).json()["timings"]
    assert _overlap(t["cover"], t["music"]) and _overlap(t["meta"], t["music"]), t
    critical = t["music"]["seconds"] + max(t["upload_audio"]["seconds"], t["upload_cover"]["seconds"]) + t[
        "upload_manifest"]["seconds"]
    assert t["total"]["seconds"] <= 1.1 * critical, t  # the song costs its critical path, not the sum
