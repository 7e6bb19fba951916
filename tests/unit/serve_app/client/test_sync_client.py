"""Songsmith (sync) against the real app over the fakes, on a loop of the stack's own: the same
contract as the async client, including resume after a dropped stream and bounded retries."""

from __future__ import annotations

import pytest

from serve_app.client import SongFailed, SongsmithConnectionError, SongsmithError
from tests.unit.serve_app.api.test_edits import wav
from tests.unit.serve_app.client.conftest import SONG, Cuts, SyncCuttingTransport

MISSING = "0" * 32


def test_generate_follows_the_song_and_download_saves_every_file(sync_stack, tmp_path):
    with sync_stack.client() as api:
        seen = []
        job = api.generate(**SONG, variations=2, on_event=seen.append)
        assert job["status"] == "succeeded" and len(job["result"]["takes"]) == 2
        assert seen[-1].terminal and [e.seq for e in seen] == list(range(1, len(seen) + 1))
        got = api.download(job["id"], tmp_path / "song")  # by id: the job is fetched first
        assert [p.name for p in got.files] == ["audio.wav", "audio-1.wav", "cover.png", "manifest.json", "song.json"]
        take1 = job["result"]["takes"][1]["r2_key"]
        assert got.audio[1].read_bytes() == sync_stack.run(sync_stack.stack.store.get(take1))
        page = api.list_songs(limit=5)
        assert [j["id"] for j in page["items"]] == [job["id"]] and page["next_cursor"] is None


def test_errors_and_edits_of_an_upload(sync_stack):
    with sync_stack.client() as api:
        with pytest.raises(SongsmithError) as e:
            api.cancel(MISSING)
        assert (e.value.status, e.value.message) == (404, "no such song job")
        with pytest.raises(SongsmithError) as e:
            api.create_edit("extend", song_id=MISSING)
        assert e.value.status == 422 and "extend_s is required" in e.value.message
        up = api.upload(wav(2.0), filename="a.wav")
        with pytest.raises(SongsmithError) as e:
            api.create_edit("cover", upload_id=up["upload_id"])
        assert e.value.message == "prompt: required for task 'cover' when the source is an upload (it has no tags)"
        job = api.wait(api.create_edit("cover", upload_id=up["upload_id"], prompt="jazz")["id"])
        assert job["status"] == "succeeded" and job["result"]["parent"] == {"upload_id": up["upload_id"]}
        api.delete_upload(up["upload_id"])
        sync_stack.stack.models.failures["music"] = RuntimeError("boom")
        with pytest.raises(SongFailed, match="boom"):
            api.generate(**SONG)


def test_the_sync_stream_resumes_after_drops_and_gives_up_boundedly(sync_stack):
    with sync_stack.client() as api:
        job = api.wait(api.create_song(**SONG)["id"])
        whole = list(api.events(job["id"]))
    cuts = Cuts(times=2, keep=3)
    with sync_stack.client(transport=SyncCuttingTransport(sync_stack.transport, cuts)) as flaky:
        assert list(flaky.events(job["id"])) == whole
    assert cuts.seen == [None, "3", "6"]
    dead = Cuts(times=None, keep=0)
    with sync_stack.client(transport=SyncCuttingTransport(sync_stack.transport, dead), max_reconnects=2) as flaky:
        with pytest.raises(SongsmithConnectionError):
            list(flaky.events(job["id"]))
        assert len(dead.seen) == 3
        assert flaky.wait(job["id"])["status"] == "succeeded"  # already over: no stream needed
