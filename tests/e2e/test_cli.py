"""`songsmith` as a subprocess against the dev stack (real Ray Serve, the kits, local storage):
one 10 s song generated, followed and downloaded (the audio decodes at 48 kHz with the asked
length), --json output, the library commands, and a refused edit that exits non-zero with the
server's message. `python -m serve_app.client.cli` always; the installed `songsmith` script too
when the venv has it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import soundfile as sf

from tests.e2e.test_songs_api import stored

pytestmark = pytest.mark.serve

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("songsmith")
RATE = 48_000


def songsmith(song_api, *argv: str, script: bool = False, timeout: float = 300) -> subprocess.CompletedProcess:
    command = [str(SCRIPT)] if script else [sys.executable, "-m", "serve_app.client.cli"]
    env = {**os.environ, "SONGSMITH_URL": song_api["base_url"], "SONGSMITH_TOKEN": song_api["token"]}
    return subprocess.run([*command, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def generated(song_api, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("cli") / "song"
    r = songsmith(song_api, "generate", "a short lofi song about rain on the window", "--duration", "10",
                  "--steps", "2", "--seed", "11", "--json", "--out", str(out))
    assert r.returncode == 0, r.stderr
    return {"doc": json.loads(r.stdout), "out": out, "stderr": r.stderr}


def test_generate_downloads_audio_that_decodes_at_48k_with_the_asked_length(song_api, generated):
    doc, out = generated["doc"], generated["out"]
    job = doc["job"]
    assert job["status"] == "succeeded" and job["request"]["infer_step"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["audio.wav", "cover.png", "manifest.json", "song.json"]
    frames, rate = sf.read(out / "audio.wav", always_2d=True)
    assert rate == RATE and frames.shape == (10 * RATE, 2)
    assert (out / "audio.wav").read_bytes() == stored(song_api, job["result"]["r2_key"]).read_bytes()
    assert json.loads((out / "song.json").read_text())["result"]["manifest_r2_key"] == job["result"]["manifest_r2_key"]
    assert (out / "manifest.json").read_bytes() == stored(song_api, job["result"]["manifest_r2_key"]).read_bytes()
    manifest = json.loads((out / "manifest.json").read_text())
    # Models are named, never located: the kits' folders, not where they lie on this machine.
    assert (manifest["music"]["model"], manifest["cover"]["model"]) == ("acestep-v15-turbo-kit", "sdxl-turbo-kit")
    assert str(Path(__file__).resolve().parents[2]) not in (out / "manifest.json").read_text()
    assert doc["download"]["audio"] == [str(out / "audio.wav")]
    assert f"song {job['id']} queued" in generated["stderr"]  # notes on stderr; no bar (not a terminal)
    assert "[#" not in generated["stderr"]


@pytest.mark.parametrize("script", [False, pytest.param(True, marks=pytest.mark.skipif(
    not SCRIPT.exists(), reason="the venv has no songsmith script (pip install -e . makes it)"))])
def test_the_library_commands_and_a_refusal(song_api, generated, tmp_path, script):
    job_id = generated["doc"]["job"]["id"]
    r = songsmith(song_api, "get", job_id, "--json", script=script)
    assert r.returncode == 0 and json.loads(r.stdout)["result"]["duration_s"] == 10
    r = songsmith(song_api, "list", "--status", "succeeded", "--json", script=script)
    assert r.returncode == 0 and job_id in [j["id"] for j in json.loads(r.stdout)["items"]]
    r = songsmith(song_api, "download", job_id, "--out", str(tmp_path / "again"), script=script)
    assert r.returncode == 0 and str(tmp_path / "again" / "audio.wav") in r.stdout
    r = songsmith(song_api, "health", script=script)
    assert r.returncode == 0 and ": ok" in r.stdout

    # An edit of a song that does not exist: refused (404 for the source, or a 422 first when the
    # stack's music model lacks the task); the CLI prints whatever the API itself answers.
    body = {"task": "repaint", "source": {"song_id": "f" * 32}, "repaint_start_s": 1, "repaint_end_s": 2}
    api = httpx.post(f"{song_api['base_url']}/v1/edits", json=body, timeout=60,
                     headers={"Authorization": f"Bearer {song_api['token']}"})
    assert api.status_code in (404, 422)
    r = songsmith(song_api, "edit", "repaint", "f" * 32, "--start", "1", "--end", "2", script=script)
    assert r.returncode == 3 and r.stdout == ""
    assert f"{api.json()['message']} (HTTP {api.status_code})" in r.stderr
    r = songsmith(song_api, "get", "f" * 32, "--json", script=script)
    assert r.returncode == 3
    assert json.loads(r.stdout) == {"error": {"status": 404, "message": "no such song job", "exit_code": 3}}
    r = subprocess.run([sys.executable, "-m", "serve_app.client.cli", "--token", "wrong-" + "x" * 20,
                        "--url", song_api["base_url"], "list"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "missing or invalid bearer token (HTTP 401)" in r.stderr
