"""The composer's step graph with fake models and storage: what runs, in what order, what is stored,
and what a failure or a cancel at each step leaves behind."""

from __future__ import annotations

import asyncio
import json

import pytest
from ray import exceptions as rx

from serve_app.songs import SongComposer, SongFailed, SongObserver, SongTask
from serve_app.storage import StorageError
from tests.support.fakes import STEPS, FakeModels, InMemoryStore

DESCRIPTION = {"full_described_song": "an upbeat synthwave song about driving at night", "audio_duration": 12.0,
               "seed": 7, "guidance_scale": None, "infer_step": None, "instrumental": False, "audio_format": "wav"}
LYRICS = {"prompt": "lofi, piano", "lyrics": "[verse]\nrain on the window\nI have a cat", "audio_duration": 10.0,
          "seed": 3, "guidance_scale": None, "infer_step": None, "instrumental": False, "audio_format": "flac"}
DESCRIBED = {"prompt": "rock", "described_lyrics": "a dog who surfs", "audio_duration": 10.0, "seed": 1,
             "guidance_scale": None, "infer_step": None, "instrumental": False, "audio_format": "mp3"}


class Recorder(SongObserver):
    def __init__(self):
        self.stages: list[str] = []
        self.progress_seen: list[tuple[int, int]] = []
        self.outcomes: list[tuple[str, str, float]] = []

    async def stage(self, name):
        self.stages.append(name)

    async def progress(self, step, total):
        self.progress_seen.append((step, total))

    def started(self, mode):
        self.outcomes.append(("started", mode, 0.0))

    def finished(self, outcome, mode, stages, audio_s):
        self.outcomes.append((outcome, mode, audio_s))


def composer(models=None, store=None, metrics=None):
    models, store = models or FakeModels(), store or InMemoryStore()
    return SongComposer(models, store, key_prefix="songs", observers=(metrics,) if metrics else ()), models, store


async def test_description_song_runs_every_step_and_stores_three_objects():
    comp, models, store = composer()
    rec, metrics = Recorder(), Recorder()
    comp.observers = (metrics,)
    result = await comp.compose(SongTask.from_request("description", DESCRIPTION), song_id="a" * 32, observer=rec)

    assert sorted(models.calls) == ["cover", "lyrics", "meta", "music", "tags"]
    assert models.seeds == {"tags": 7, "lyrics": 7, "meta": 7}  # the song's seed drives its words
    assert rec.stages == ["writing", "painting", "composing", "encoding", "uploading"]
    assert rec.progress_seen == [(k, STEPS) for k in range(1, STEPS + 1)]
    assert await store.list("songs/") == [f"songs/{'a' * 32}/{n}" for n in ("audio.wav", "cover.png", "manifest.json")]
    assert (result.r2_key, result.title, result.categories) == (f"songs/{'a' * 32}/audio.wav", "Fake Title",
                                                                ["Pop", "Electronic", "Test"])
    assert result.seed == 7 and result.duration_s == 12.0 and result.sample_rate == 48_000
    assert set(result.timings) >= {"tags", "lyrics", "meta", "cover", "music", "upload_audio", "upload_cover",
                                   "upload_manifest", "total"}
    manifest = json.loads(await store.get(result.manifest_r2_key))
    assert manifest["request"]["mode"] == "description" and manifest["request"]["seed"] == 7
    assert manifest["result"]["r2_key"] == result.r2_key and manifest["music"]["seed"] == 7
    # Metrics hear the same song through the same hooks, labelled by mode (not a class name).
    assert metrics.outcomes == [("started", "description", 0.0), ("succeeded", "description", 12.0)]


async def test_lyrics_mode_asks_the_llm_only_for_title_and_sings_the_callers_words():
    comp, models, store = composer()
    rec = Recorder()
    result = await comp.compose(SongTask.from_request("lyrics", LYRICS), observer=rec)
    assert sorted(models.calls) == ["cover", "meta", "music"]
    assert rec.stages == ["painting", "composing", "encoding", "uploading"]
    assert "rain on the window" in result.lyrics and "I have a cat" in result.lyrics
    assert models.music_requests[0].lyrics == result.lyrics and result.audio_format == "flac"
    assert result.r2_key.endswith("/audio.flac") and result.tags == ["lofi", "piano"]


async def test_described_lyrics_mode_writes_lyrics_about_the_subject_with_the_callers_tags():
    comp, models, _ = composer()
    rec = Recorder()
    result = await comp.compose(SongTask.from_request("described_lyrics", DESCRIBED), observer=rec)
    assert sorted(models.calls) == ["cover", "lyrics", "meta", "music"]
    assert rec.stages[0] == "writing" and "a dog who surfs" in result.lyrics and result.tags[0] == "rock"


async def test_instrumental_skips_the_lyrics_and_renders_without_vocals():
    comp, models, _ = composer()
    result = await comp.compose(SongTask.from_request("description", {**DESCRIPTION, "instrumental": True}))
    assert "lyrics" not in models.calls and result.lyrics == "" and result.instrumental
    assert models.music_requests[0].instrumental and models.music_requests[0].lyrics == ""


async def test_cover_starts_while_the_lyrics_are_still_being_written():
    """The graph starts each step when its own inputs exist: the cover needs only the tags."""
    comp, models, _ = composer()
    lyrics = models.gate("lyrics")
    song = asyncio.ensure_future(comp.compose(SongTask.from_request("description", DESCRIPTION)))
    await lyrics.reached.wait()
    for _ in range(50):
        if "cover" in models.calls:
            break
        await asyncio.sleep(0.01)
    assert "cover" in models.calls and "music" not in models.calls  # music waits for the lyrics
    lyrics.release()
    await song


@pytest.mark.parametrize("step", ["tags", "lyrics", "meta", "cover", "music"])
async def test_a_failing_step_fails_the_song_by_name_and_stores_nothing(step):
    comp, models, store = composer()
    models.failures[step] = RuntimeError(f"{step} exploded\nwith a traceback line")
    rec = Recorder()
    comp.observers = (rec,)
    with pytest.raises(SongFailed) as info:
        await comp.compose(SongTask.from_request("description", DESCRIPTION))
    assert str(info.value) == f"{step} failed: RuntimeError: {step} exploded"
    assert not info.value.retryable
    assert store.objects == {}
    assert rec.outcomes[-1][0] == "failed"


async def test_a_failed_upload_removes_what_was_stored_and_is_retryable_when_storage_is_unreachable():
    store = InMemoryStore()
    comp, _, _ = composer(store=store)
    store.fail_puts = StorageError("cannot reach S3 endpoint", code="unreachable")
    with pytest.raises(SongFailed) as info:
        await comp.compose(SongTask.from_request("lyrics", LYRICS))
    assert info.value.stage == "upload" and info.value.retryable and store.objects == {}


async def test_a_dead_replica_is_a_retryable_failure():
    comp, models, _ = composer()
    models.failures["music"] = rx.ActorDiedError()
    with pytest.raises(SongFailed) as info:
        await comp.compose(SongTask.from_request("lyrics", LYRICS))
    assert info.value.stage == "music" and info.value.retryable


async def test_music_that_ends_without_audio_fails_the_song():
    class Silent(FakeModels):
        async def music(self, req, song_id):
            yield "progress", (1, 1)

    comp, _, store = composer(models=Silent())
    with pytest.raises(SongFailed, match="music failed: the music deployment returned no audio"):
        await comp.compose(SongTask.from_request("lyrics", LYRICS))
    assert store.objects == {}


@pytest.mark.parametrize("where", ["tags", "lyrics", "cover", "music:2"])
async def test_cancelling_a_song_at_any_step_cancels_the_model_calls_in_flight(where):
    comp, models, store = composer()
    gate = models.gate(where)
    rec = Recorder()
    comp.observers = (rec,)
    song = asyncio.ensure_future(comp.compose(SongTask.from_request("description", DESCRIPTION)))
    await gate.reached.wait()
    song.cancel()
    with pytest.raises(asyncio.CancelledError):
        await song
    expected = where.split(":")[0]
    assert expected in models.cancelled
    assert rec.outcomes[-1][0] == "cancelled"
    assert store.objects == {}  # nothing is stored before the music exists


async def test_cancelling_during_upload_leaves_cleanup_to_the_caller():
    """A cancel may mean the lease moved to another worker: the composer must not delete its objects."""

    class SlowStore(InMemoryStore):
        def __init__(self):
            super().__init__()
            self.started = asyncio.Event()

        async def put(self, key, data, content_type, metadata=None):
            await super().put(key, data, content_type, metadata)
            if key.endswith("cover.png"):
                self.started.set()
                await asyncio.sleep(10)

    store = SlowStore()
    comp, _, _ = composer(store=store)
    song = asyncio.ensure_future(comp.compose(SongTask.from_request("lyrics", LYRICS), song_id="b" * 32))
    await store.started.wait()
    song.cancel()
    with pytest.raises(asyncio.CancelledError):
        await song
    assert f"songs/{'b' * 32}/cover.png" in store.objects
    await comp.remove_partial("b" * 32)
    assert store.objects == {}


def test_a_task_from_each_mode_says_which_words_the_llm_writes():
    d = SongTask.from_request("description", DESCRIPTION)
    assert (d.describe, d.lyrics_about, d.tags) == (DESCRIPTION["full_described_song"],) * 2 + (None,)
    lyr = SongTask.from_request("lyrics", LYRICS)
    assert (lyr.describe, lyr.lyrics_about, lyr.tags, lyr.meta_about) == (None, None, "lofi, piano", "lofi, piano")
    des = SongTask.from_request("described_lyrics", DESCRIBED)
    assert (des.describe, des.lyrics_about, des.meta_about) == (None, "a dog who surfs", "a dog who surfs")
    seeded = lyr.with_seed(99)
    assert seeded.options.seed == 99 and seeded.request["seed"] == 99 and lyr.options.seed == 3
    with pytest.raises(ValueError):
        SongTask.from_request("remix", LYRICS)
