"""`songsmith` in-process (`main(argv, transport=...)`) against the real app over the fakes: what
each command prints, --json, the progress bar on a terminal only, exit codes, Ctrl-C."""

from __future__ import annotations

import io
import json

import httpx
import pytest

from serve_app.client import Songsmith, cli
from tests.unit.serve_app.api.test_edits import wav

MISSING = "0" * 32


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(sync_stack, *argv: str, transport=None) -> int:
    return cli.main(["--url", "http://songsmith.test", "--token", _token(), *argv],
                    transport=transport or sync_stack.transport)


def _token() -> str:
    from tests.support.fakes import API_TOKEN

    return API_TOKEN


def test_generate_json_submits_follows_downloads_and_prints_only_json(sync_stack, tmp_path, capsys):
    rc = run(sync_stack, "generate", "a song about rain", "--duration", "10", "--variations", "2", "--seed", "7",
             "--steps", "4", "--bpm", "90", "--key", "a minor", "--time-signature", "3/4", "--json",
             "--out", str(tmp_path / "rain"))
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    doc = json.loads(captured.out)
    job = doc["job"]
    assert job["status"] == "succeeded" and job["mode"] == "description"
    assert job["request"]["full_described_song"] == "a song about rain"
    assert (job["request"]["infer_step"], job["request"]["keyscale"], job["request"]["timesignature"]) == (4, "A minor",
                                                                                                          "3")
    assert [p.rsplit("/", 1)[1] for p in doc["download"]["files"]] == ["audio.wav", "audio-1.wav", "cover.png",
                                                                       "manifest.json", "song.json"]
    assert all((tmp_path / "rain" / name).is_file() for name in ("audio.wav", "cover.png", "song.json"))
    assert "[#" not in captured.err  # stderr is not a terminal here: no bar


def test_generate_draws_a_bar_on_a_terminal_and_prints_where_the_files_are(sync_stack, tmp_path, capsys,
                                                                          monkeypatch):
    lyrics = tmp_path / "words.txt"
    lyrics.write_text("[verse]\nrain on the window\n")
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    rc = run(sync_stack, "generate", "--tags", "lofi, piano", "--lyrics", str(lyrics), "--duration", "10",
             "--out", str(tmp_path / "o"))
    out = capsys.readouterr().out
    assert rc == 0, terminal.getvalue()
    bar = terminal.getvalue()
    assert "\r" in bar and "composing step 4/4" in bar and "100%" in bar and "succeeded" in bar
    assert "\"Fake Title\"" in out and str(tmp_path / "o" / "audio.wav") in out
    job = Songsmith("http://songsmith.test", _token(), transport=sync_stack.transport).list_songs()["items"][0]
    assert job["mode"] == "lyrics" and job["request"]["lyrics"].startswith("[verse]\nrain on the window")


def test_a_failed_song_exits_1_with_the_jobs_error(sync_stack, capsys):
    sync_stack.stack.models.failures["music"] = RuntimeError("out of GPU memory")
    rc = run(sync_stack, "generate", "x", "--duration", "10", "--json")
    captured = capsys.readouterr()
    assert rc == 1
    assert "failed: music failed: RuntimeError: out of GPU memory" in captured.err
    assert json.loads(captured.out)["job"]["status"] == "failed"


def test_refusals_exit_3_with_the_servers_message_and_usage_errors_exit_2(sync_stack, capsys, tmp_path):
    assert run(sync_stack, "edit", "repaint", MISSING, "--start", "1", "--end", "2") == 3
    assert "no such song (source) (HTTP 404)" in capsys.readouterr().err
    assert run(sync_stack, "get", MISSING, "--json") == 3
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"error": {"status": 404, "message": "no such song job", "exit_code": 3}}
    assert run(sync_stack, "generate", "x", "--duration", "5") == 3
    assert "audio_duration: Input should be greater than or equal to 10" in capsys.readouterr().err
    assert run(sync_stack, "generate") == 2  # nothing to make a song from
    assert "describe the song" in capsys.readouterr().err
    assert run(sync_stack, "edit", "cover", "not-a-song-or-file") == 2
    assert "is not a song id" in capsys.readouterr().err
    assert run(sync_stack, "generate", "x", "--variations", "0") == 2  # argparse's own check
    capsys.readouterr()

    def refuse(request):
        raise httpx.ConnectError("connection refused")

    assert run(sync_stack, "list", transport=httpx.MockTransport(refuse)) == 4
    assert "cannot reach http://songsmith.test" in capsys.readouterr().err
    assert cli.main(["--url", "ftp://x", "health"]) == 2


def test_edit_of_a_local_file_uploads_it_first(sync_stack, tmp_path, capsys):
    source = tmp_path / "riff.wav"
    source.write_bytes(wav(2.0))
    rc = run(sync_stack, "edit", "cover", str(source), "--tags", "jazz", "--strength", "0.4", "--json", "--no-download")
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    job = json.loads(captured.out)["job"]
    assert job["mode"] == "cover" and job["request"]["cover_strength"] == 0.4
    assert job["result"]["parent"]["upload_id"] and "uploaded" in captured.err
    assert json.loads(captured.out)["download"] is None


def test_the_library_commands(sync_stack, tmp_path, capsys):
    assert run(sync_stack, "generate", "x", "--duration", "10", "--no-wait", "--json") == 0
    job_id = json.loads(capsys.readouterr().out)["id"]
    with Songsmith("http://songsmith.test", _token(), transport=sync_stack.transport) as api:
        api.wait(job_id)
    assert run(sync_stack, "list") == 0
    assert job_id in capsys.readouterr().out
    assert run(sync_stack, "--json", "list", "--status", "succeeded") == 0  # flags before the command too
    assert [j["id"] for j in json.loads(capsys.readouterr().out)["items"]] == [job_id]
    assert run(sync_stack, "get", job_id) == 0
    assert "succeeded" in capsys.readouterr().out
    assert run(sync_stack, "edit", "repaint", f"{job_id}:0", "--start", "1", "--end", "3", "--no-download") == 0
    capsys.readouterr()
    assert run(sync_stack, "edits", job_id, "--json") == 0
    assert [j["mode"] for j in json.loads(capsys.readouterr().out)["items"]] == ["repaint"]
    assert run(sync_stack, "download", job_id, "--out", str(tmp_path / "d")) == 0
    assert (tmp_path / "d" / "audio.wav").is_file() and (tmp_path / "d" / "song.json").is_file()
    capsys.readouterr()
    source = tmp_path / "a.flac"
    import numpy as np
    import soundfile as sf

    sf.write(source, np.zeros((16000, 2), np.float32), 8000, format="FLAC")
    assert run(sync_stack, "upload", str(source), "--json") == 0
    assert json.loads(capsys.readouterr().out)["original"]["format"] == "flac"
    assert run(sync_stack, "cancel", job_id) == 0  # a finished song: unchanged
    assert "succeeded" in capsys.readouterr().out
    assert run(sync_stack, "delete", job_id) == 0
    assert run(sync_stack, "get", job_id) == 3
    assert run(sync_stack, "health") == 0
    assert "ok" in capsys.readouterr().out
    sync_stack.stack.models.ready_error = RuntimeError("down")
    assert run(sync_stack, "health", "--json") == 1
    assert json.loads(capsys.readouterr().out)["status"] == "degraded"


@pytest.mark.parametrize("answer", [True, False])
def test_ctrl_c_asks_whether_to_cancel(sync_stack, monkeypatch, capsys, answer):
    gate = sync_stack.stack.models.gate("music:1")
    real_wait = Songsmith.wait

    def interrupted_wait(self, job_id, **kw):
        sync_stack.run(gate.reached.wait())  # the song is running
        raise KeyboardInterrupt

    asked = []
    monkeypatch.setattr(Songsmith, "wait", interrupted_wait)
    monkeypatch.setattr(cli, "_confirm", lambda q: asked.append(q) or answer)
    assert run(sync_stack, "generate", "x", "--duration", "10") == 130
    assert asked == ["cancel the job? [y/N] "]
    err = capsys.readouterr().err
    [job_id] = sync_stack.stack.runner.running
    with Songsmith("http://songsmith.test", _token(), transport=sync_stack.transport) as api:
        if answer:
            assert "cancel requested" in err
            assert real_wait(api, job_id)["status"] == "cancelled"
        else:
            assert "keeps running" in err and f"songsmith cancel {job_id}" in err
            assert not api.get_song(job_id)["cancel_requested"]
            gate.release()
            assert real_wait(api, job_id)["status"] == "succeeded"


def test_capabilities_lists_the_tasks_and_why_not_the_others(sync_stack, capsys):
    assert run(sync_stack, "capabilities") == 0
    text = capsys.readouterr().out
    assert text.startswith("tasks: text2music, cover, repaint, extend\n")
    assert "  not here: extract needs a base (non-turbo) ACE-Step 1.5 checkpoint" in text and "music_base" in text
    assert run(sync_stack, "capabilities", "--json") == 0
    assert json.loads(capsys.readouterr().out)["max_variations"] == 4
