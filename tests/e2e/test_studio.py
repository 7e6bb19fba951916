"""Studio on the dev stack (real Ray Serve, the kits, local storage): takes, uploads, every edit a
turbo checkpoint can do, and delete. Audio lengths and rates are read from the stored files; a
repaint's and an extend's kept ranges are compared sample by sample with their source."""

from __future__ import annotations

import io
import time

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.e2e.test_songs_api import stored

pytestmark = pytest.mark.serve

RATE = 48_000
LSB = 1 / 32768  # one step of the 16-bit WAVs the songs are stored as
FADE_S = 0.03  # the crossfade placed inside each edge of a repainted range (deployments/music.py)


@pytest.fixture(scope="module")
def client(song_api):
    with httpx.Client(base_url=song_api["base_url"], headers={"Authorization": f"Bearer {song_api['token']}"},
                      timeout=300) as c:
        yield c


def wait(client, job_id: str, timeout_s: float = 240) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/v1/songs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            assert job["status"] == "succeeded", job
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} not done in {timeout_s} s")


def audio(song_api, key: str) -> np.ndarray:
    frames, rate = sf.read(io.BytesIO(stored(song_api, key).read_bytes()), dtype="float32", always_2d=True)
    assert rate == RATE and frames.shape[1] == 2
    return frames


@pytest.fixture(scope="module")
def two_takes(song_api, client) -> dict:
    r = client.post("/v1/songs", json={"prompt": "lofi, piano", "lyrics": "[verse]\nrain on the window",
                                       "audio_duration": 10, "infer_step": 2, "variations": 2, "seed": 41,
                                       "bpm": 90, "keyscale": "A minor"})
    assert r.status_code == 202, r.text
    return wait(client, r.json()["id"])


def test_two_takes_are_two_songs_of_the_right_length_from_seed_and_seed_plus_one(song_api, two_takes):
    song = two_takes["result"]
    assert [t["seed"] for t in song["takes"]] == [41, 42]
    a, b = (audio(song_api, t["r2_key"]) for t in song["takes"])
    assert a.shape == b.shape == (10 * RATE, 2)
    assert not np.array_equal(a, b)
    assert song["controls"] == {"bpm": 90, "keyscale": "A minor", "vocal_language": "en"}
    for t in song["takes"]:
        r = httpx.get(t["audio_url"], timeout=30)
        assert r.status_code == 200 and r.content == stored(song_api, t["r2_key"]).read_bytes()


def test_repaint_keeps_the_source_outside_the_range(song_api, client, two_takes):
    r = client.post("/v1/edits", json={"task": "repaint", "source": {"song_id": two_takes["id"], "take": 1},
                                       "repaint_start_s": 3, "repaint_end_s": 6, "infer_step": 2})
    assert r.status_code == 202, r.text
    song = wait(client, r.json()["id"])["result"]
    src, out = audio(song_api, two_takes["result"]["takes"][1]["r2_key"]), audio(song_api, song["r2_key"])
    assert out.shape == src.shape
    keep = np.ones(len(src), bool)
    keep[3 * RATE:6 * RATE] = False
    assert np.abs(out[keep] - src[keep]).max() <= LSB  # kept: the source's samples (16-bit round trip)
    inner = slice(int((3 + FADE_S) * RATE), int((6 - FADE_S) * RATE))
    assert np.abs(out[inner] - src[inner]).max() > 0.01  # the range itself is new audio
    assert song["parent"] == {"song_id": two_takes["id"], "take": 1}


def test_extend_adds_seconds_after_an_unchanged_source(song_api, client, two_takes):
    r = client.post("/v1/edits", json={"task": "extend", "source": {"song_id": two_takes["id"]}, "extend_s": 4,
                                       "infer_step": 2, "audio_format": "flac"})
    assert r.status_code == 202, r.text
    song = wait(client, r.json()["id"])["result"]
    src, out = audio(song_api, two_takes["result"]["r2_key"]), audio(song_api, song["r2_key"])
    assert out.shape == (14 * RATE, 2) and song["duration_s"] == pytest.approx(14.0)
    assert np.abs(out[:10 * RATE] - src).max() <= LSB
    edits = client.get(f"/v1/songs/{two_takes['id']}/edits").json()["items"]
    assert song["song_id"] in [e["id"] for e in edits]


def test_an_uploaded_file_is_resampled_and_covered(song_api, client):
    t = np.arange(int(4.0 * 44_100)) / 44_100
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 44_100, format="WAV")
    r = client.post("/v1/uploads?filename=hum.wav", content=buf.getvalue(), headers={"Content-Type": "audio/wav"})
    assert r.status_code == 201, r.text
    up = r.json()
    assert (up["sample_rate"], up["channels"]) == (RATE, 2) and up["duration_s"] == pytest.approx(4.0, abs=1e-3)
    r = client.post("/v1/edits", json={"task": "cover", "source": {"upload_id": up["upload_id"]},
                                       "prompt": "jazz, brushes", "cover_strength": 0.5, "infer_step": 2})
    assert r.status_code == 202, r.text
    song = wait(client, r.json()["id"])["result"]
    assert audio(song_api, song["r2_key"]).shape == (4 * RATE, 2)
    assert song["parent"] == {"upload_id": up["upload_id"]} and song["mode"] == "cover"
    bad = client.post("/v1/uploads", content=b"RIFF....WAVEfmt garbage", headers={"Content-Type": "audio/wav"})
    assert bad.status_code == 422 and bad.json()["message"].startswith("file: ")


def test_base_only_tasks_run_on_the_music_base_deployment(song_api, client, two_takes):
    # The dev stack's music is the turbo kit, which cannot extract; music_base (the base kit) can,
    # and the ingress routes the edit there (without music_base this is a 422 on `task`:
    # tests/unit/serve_app/api/test_edits.py).
    health = client.get("/health").json()["deployments"]
    assert health["music_base"]["ready"] and health["music_base"]["detail"].startswith("acestep-v15-base-kit")
    r = client.post("/v1/edits", json={"task": "extract", "source": {"song_id": two_takes["id"], "take": 1},
                                       "track_name": "vocals", "infer_step": 2})
    assert r.status_code == 202, r.text
    song = wait(client, r.json()["id"])["result"]
    assert song["mode"] == "extract" and song["parent"] == {"song_id": two_takes["id"], "take": 1}
    assert audio(song_api, song["r2_key"]).shape == (10 * RATE, 2)  # the source's length
    manifest = client.get(song["manifest_url"]).json()
    assert manifest["music"]["model"] == "acestep-v15-base-kit"  # rendered by MusicBase
    assert manifest["music"]["task"] == "extract" and manifest["edit"]["track_name"] == "vocals"


def test_delete_removes_the_song_and_its_files(song_api, client):
    r = client.post("/v1/songs", json={"prompt": "ambient", "instrumental": True, "audio_duration": 10,
                                       "infer_step": 1})
    job = wait(client, r.json()["id"])
    folder = stored(song_api, f"songs/{job['id']}")
    assert folder.exists() and any(folder.iterdir())
    assert client.delete(f"/v1/songs/{job['id']}").status_code == 204
    assert not folder.exists() or not any(folder.iterdir())
    assert client.get(f"/v1/songs/{job['id']}").status_code == 404
    assert client.delete(f"/v1/songs/{job['id']}").status_code == 204
