"""Faults injected into a running stack, each with the outcome a user must see.

One app for the module: S3 storage on a private SeaweedFS server, the job store on a private
PostgreSQL server, fault injection enabled on the music replicas. Every test leaves the servers
running again for the next.
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from tests.conftest import fast_app_args
from tests.support.postgres import PostgresServer, require_postgres
from tests.support.s3_server import WeedS3Server

pytestmark = [pytest.mark.serve, pytest.mark.s3]

APP = "songsmith-faults"
TERMINAL = ("succeeded", "failed", "cancelled")
SONG = {"prompt": "rock", "lyrics": "[verse]\nhold on", "audio_duration": 30.0, "infer_step": 12}
# Long enough on the CPU kits (several seconds of rendering) to be caught mid-render even on a busy machine.
SLOW_SONG = {**SONG, "audio_duration": 120.0, "infer_step": 40}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    require_postgres()
    with WeedS3Server(base_dir=tmp_path_factory.mktemp("weed-faults")) as s3, PostgresServer() as pg:
        yield s3, pg


@pytest.fixture(scope="module")
def app(serve_cluster, servers, api_token, tmp_path_factory):
    s3, pg = servers
    env = {**s3.env(), "JOBS_DATABASE_URL": pg.url}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    args = fast_app_args(str(tmp_path_factory.mktemp("unused")),
                         storage={"backend": "s3", "max_attempts": 2, "connect_timeout_s": 1.0, "read_timeout_s": 5.0})
    args["jobs"].update(lease_s=4.0, heartbeat_s=0.5, retry_base_s=0.5, max_attempts=3)
    args["ingress"]["deployment"]["runtime_env"] = {"env_vars": env}
    args["music"]["deployment"]["runtime_env"] = {"env_vars": {"SONGSMITH_FAULTS": '{"music_oom_tag": "boom"}'}}
    try:
        base = serve_cluster.deploy(args, name=APP, route_prefix="/faults", token=api_token)
        with httpx.Client(base_url=base, timeout=120, headers={"Authorization": f"Bearer {api_token}"}) as c:
            yield c
    finally:
        serve_cluster.delete(APP)
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def wait(client, job_id, cond, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/v1/songs/{job_id}")
        if r.status_code == 200 and cond(r.json()):
            return r.json()
        time.sleep(0.2)
    raise AssertionError(f"job {job_id}: condition not met in {timeout}s: {r.status_code} {r.text[:300]}")


def done(client, job_id, timeout=180):
    return wait(client, job_id, lambda j: j["status"] in TERMINAL, timeout)


def music_pids(serve_cluster) -> set[int]:
    return {a.pid for a in serve_cluster.actors(f"SERVE_REPLICA::{APP}#Music#")}


def song_objects(s3, job_id) -> list[str]:
    listed = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix=f"songs/{job_id}/")
    return sorted(o["Key"] for o in listed.get("Contents", []))


def test_engine_error_fails_the_job_and_the_replica_keeps_serving(app, serve_cluster, servers):
    before = music_pids(serve_cluster)
    job = app.post("/v1/songs", json={**SONG, "prompt": "boom, rock"}).json()
    failed = done(app, job["id"])
    assert failed["status"] == "failed" and failed["attempts"] == 1  # an engine error is not retried
    assert "out of GPU memory" in failed["error"] and "audio_duration" in failed["error"]
    assert song_objects(servers[0], job["id"]) == []
    ok = done(app, app.post("/v1/songs", json=SONG).json()["id"])
    assert ok["status"] == "succeeded"
    assert music_pids(serve_cluster) == before  # same replica, still healthy


def test_music_replica_killed_mid_song_is_replaced_and_the_job_retried(app, serve_cluster, servers):
    job = app.post("/v1/songs", json=SLOW_SONG).json()
    wait(app, job["id"], lambda j: j["stage"] == "composing" and (j["progress"] or {}).get("step"))
    [pid] = music_pids(serve_cluster)
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    final = done(app, job["id"])
    print(f"\nmusic replica killed: job succeeded {time.monotonic() - t0:.1f}s later on attempt {final['attempts']}")
    assert final["status"] == "succeeded", final["error"]
    # The ingress renders it again on the replacement replica within the same attempt
    # (serve_app/songs/handles.py: a call whose replica died is made once more).
    assert final["attempts"] == 1
    assert music_pids(serve_cluster) and pid not in music_pids(serve_cluster)
    assert [k.rsplit("/", 1)[1] for k in song_objects(servers[0], job["id"])] == ["audio.wav", "cover.png",
                                                                                  "manifest.json"]


def test_s3_outage_fails_cleanly_and_recovers(app, servers):
    s3, _ = servers
    job = app.post("/v1/songs", json=SLOW_SONG).json()
    wait(app, job["id"], lambda j: j["stage"] == "composing")
    s3.stop(graceful=False)
    try:
        failed = done(app, job["id"])
        assert failed["status"] == "failed"
        assert failed["attempts"] == 3  # retried with backoff, then given up
        assert "upload failed" in failed["error"] and "cannot reach S3 endpoint" in failed["error"]
    finally:
        s3.start()
    assert song_objects(s3, job["id"]) == []  # no partial objects
    again = done(app, app.post("/v1/songs", json=SONG).json()["id"])
    assert again["status"] == "succeeded"


def test_database_outage_is_503_and_loses_no_accepted_job(app, servers):
    _, pg = servers
    job = app.post("/v1/songs", json=SLOW_SONG).json()
    wait(app, job["id"], lambda j: j["stage"] == "composing")
    pg.stop()
    try:
        r = app.post("/v1/songs", json=SONG)
        assert r.status_code == 503 and "job store unavailable" in r.json()["detail"]
        assert int(r.headers["retry-after"]) >= 1
        assert pg.url.split("@")[0].split(":")[-1] not in r.text  # no password in the error
        assert app.get(f"/v1/songs/{job['id']}").status_code == 503
        health = app.get("/health")
        # With the database down a key cannot be checked either: the public answer, degraded.
        assert health.status_code == 503 and health.json()["status"] == "degraded"
        time.sleep(3)
    finally:
        pg.start()
    final = done(app, job["id"])
    assert final["status"] == "succeeded", final["error"]
    assert done(app, app.post("/v1/songs", json=SONG).json()["id"])["status"] == "succeeded"
