"""The job runner's state machine with fake models over a real SQLite job store: success, cancel
(by this replica or by another), retries, permanent failures, lease loss and shutdown."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from ray import exceptions as rx

from serve_app.auth import owner_digest
from serve_app.jobs.runner import StopReason, job_seed
from tests.support.fakes import API_TOKEN, fake_services

OWNER = owner_digest(API_TOKEN)
REQUEST = {"prompt": "lofi, piano", "lyrics": "[verse]\nrain", "audio_duration": 10.0, "seed": -1,
           "guidance_scale": None, "infer_step": None, "instrumental": False, "audio_format": "wav"}


async def until(predicate, timeout_s: float = 5.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.fixture
async def stack(tmp_path):
    s = fake_services(tmp_path / "jobs.db")
    s.runner.start()
    yield s
    await s.runner.drain()


def submit(stack, request=REQUEST):
    job, _ = stack.jobs.create(OWNER, "lyrics", request)
    stack.runner.wake()
    return job


def event_statuses(stack, job_id):
    return [e.data.get("status") for e in stack.jobs.events(job_id) if e.type == "status"]


async def test_a_job_runs_to_succeeded_with_its_stages_progress_and_result(stack):
    job = submit(stack)
    done = await stack.runner.wait(job.id, 5)
    assert done.status == "succeeded" and done.attempts == 1
    assert done.result["song_id"] == job.id and done.result["seed"] == job_seed(job)
    stages = [e.data["stage"] for e in stack.jobs.events(job.id) if e.type == "stage"]
    assert stages == ["painting", "composing", "encoding", "uploading"]
    assert event_statuses(stack, job.id) == ["queued", "running", "succeeded"]
    assert sorted(stack.store.objects) == [f"songs/{job.id}/{n}" for n in ("audio.wav", "cover.png", "manifest.json")]


async def test_cancel_on_this_replica_stops_the_song_and_removes_its_objects(stack):
    gate = stack.models.gate("music:2")
    job = submit(stack)
    await gate.reached.wait()
    stack.jobs.request_cancel(job.id, OWNER)
    assert stack.runner.cancel_local(job.id)
    done = await stack.runner.wait(job.id, 5)
    assert done.status == "cancelled" and done.error == "cancelled by the client"
    assert "music" in stack.models.cancelled and stack.store.objects == {}


async def test_cancel_requested_through_another_replica_is_seen_by_the_heartbeat(stack):
    gate = stack.models.gate("music:1")
    job = submit(stack)
    await gate.reached.wait()
    stack.jobs.request_cancel(job.id, OWNER)  # only the database knows; no cancel_local here
    done = await stack.runner.wait(job.id, 5)
    assert done.status == "cancelled" and "music" in stack.models.cancelled


async def test_a_transient_failure_is_retried_and_the_retry_succeeds(stack):
    stack.models.fail_next["music"] = [rx.ActorDiedError()]  # the first attempt's replica dies
    job = submit(stack)
    done = await stack.runner.wait(job.id, 5)
    assert done.status == "succeeded" and done.attempts == 2
    retry = [e.data for e in stack.jobs.events(job.id) if e.type == "status" and e.data.get("retry")]
    assert retry and "music failed" in retry[0]["error"]


async def test_a_transient_failure_on_every_attempt_fails_after_max_attempts(stack):
    stack.models.failures["music"] = rx.ActorDiedError()
    job = submit(stack)
    done = await stack.runner.wait(job.id, 5)
    assert done.status == "failed" and done.attempts == stack.jobs.max_attempts
    assert done.error.startswith("music failed: ActorDiedError")


async def test_an_engine_error_fails_at_once_with_its_own_words(stack):
    stack.models.failures["music"] = RuntimeError("out of GPU memory rendering 10 s")
    job = submit(stack)
    done = await stack.runner.wait(job.id, 5)
    assert (done.status, done.attempts) == ("failed", 1)
    assert done.error == "music failed: RuntimeError: out of GPU memory rendering 10 s"


async def test_a_song_whose_lease_moved_to_another_worker_stops_and_writes_nothing(tmp_path):
    now = [datetime(2026, 12, 1, tzinfo=UTC)]
    # A slow heartbeat, so it cannot renew the lease between the clock jump and the other claim;
    # the old owner learns of the loss from its next progress write.
    s = fake_services(tmp_path / "jobs.db", clock=lambda: now[0], lease_s=5, heartbeat_s=30)
    s.runner.start()
    gate = s.models.gate("music:1")
    job = submit(s)
    await gate.reached.wait()
    now[0] += timedelta(seconds=60)  # our lease expired: another replica takes the job
    taken = s.jobs.claim("other-worker")
    assert taken is not None and taken.id == job.id
    gate.release()
    await until(lambda: job.id not in s.runner.running)
    after = s.jobs.get(job.id)
    assert after.status == "running" and after.lease_owner == "other-worker" and after.attempts == 2
    assert "music" in s.models.cancelled
    assert event_statuses(s, job.id) == ["queued", "running", "running"]  # nothing written by the old owner
    await s.runner.drain()


async def test_a_job_abandoned_by_dead_workers_is_failed_and_its_partial_objects_removed(tmp_path):
    now = [datetime(2026, 12, 1, tzinfo=UTC)]
    s = fake_services(tmp_path / "jobs.db", clock=lambda: now[0], lease_s=5, max_attempts=1)
    job, _ = s.jobs.create(OWNER, "lyrics", REQUEST)
    assert s.jobs.claim("a-worker-that-dies").id == job.id  # its last attempt
    s.store.objects[f"songs/{job.id}/cover.png"] = (b"png", "image/png")  # uploaded before it died
    s.store.objects["songs/" + "f" * 32 + "/audio.wav"] = (b"wav", "audio/wav")  # another song's
    now[0] += timedelta(seconds=60)  # its lease ran out
    s.runner.start()
    s.runner.wake()
    await until(lambda: s.jobs.get(job.id).status == "failed")
    assert "stopped responding" in s.jobs.get(job.id).error
    await until(lambda: not any(k.startswith(f"songs/{job.id}/") for k in s.store.objects))
    assert list(s.store.objects) == ["songs/" + "f" * 32 + "/audio.wav"]
    await s.runner.drain()


async def test_shutdown_hands_running_songs_back_to_the_queue(tmp_path):
    s = fake_services(tmp_path / "jobs.db")
    s.runner.start()
    gate = s.models.gate("music:1")
    job = submit(s)
    await gate.reached.wait()
    await s.runner.drain()  # drain_timeout 0.5 s: the song is still held at its gate
    back = s.jobs.get(job.id)
    assert back.status == "queued" and back.lease_owner is None and s.runner.running == []
    assert s.store.objects == {}


async def test_wait_times_out_while_a_song_is_still_running(stack):
    gate = stack.models.gate("music:1")
    job = submit(stack)
    await gate.reached.wait()
    with pytest.raises(asyncio.TimeoutError):
        await stack.runner.wait(job.id, 0.1)
    gate.release()
    assert (await stack.runner.wait(job.id, 5)).status == "succeeded"


async def test_the_runner_runs_at_most_its_concurrency(tmp_path):
    s = fake_services(tmp_path / "jobs.db", concurrency=2)
    s.runner.start()
    gate = s.models.gate("music")
    jobs = [submit(s) for _ in range(4)]
    await until(lambda: len(s.runner.running) == 2)
    await asyncio.sleep(0.1)
    assert len(s.runner.running) == 2 and s.jobs.counts()["queued"] == 2
    gate.release()
    for j in jobs:
        assert (await s.runner.wait(j.id, 5)).status == "succeeded"
    await s.runner.drain()


def test_the_first_stop_reason_is_the_one_that_counts():
    from serve_app.jobs.runner import Run

    class Task:
        cancels = 0

        def cancel(self):
            Task.cancels += 1

    run = Run(job=None, task=Task())
    run.halt(StopReason.LOST)
    run.halt(StopReason.CANCEL)
    assert run.stop is StopReason.LOST and Task.cancels == 1


async def test_each_job_writes_its_words_from_its_own_seed_and_a_given_seed_is_kept(stack):
    described = {**REQUEST, "described_lyrics": "a surfing dog", "seed": -1}
    del described["lyrics"]
    seeds = []
    for _ in range(2):
        job, _ = stack.jobs.create(OWNER, "described_lyrics", described)
        stack.runner.wake()
        await stack.runner.wait(job.id, 5)
        seeds.append(stack.models.seeds["lyrics"])
        assert seeds[-1] == job_seed(job)
    assert seeds[0] != seeds[1]  # regenerating the same description samples new lyrics
    job, _ = stack.jobs.create(OWNER, "described_lyrics", {**described, "seed": 1234})
    stack.runner.wake()
    await stack.runner.wait(job.id, 5)
    assert stack.models.seeds["lyrics"] == 1234
