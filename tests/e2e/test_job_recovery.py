"""Fault test: the OS process of the ingress replica running a job is killed (found through Ray's
state API). The job still succeeds, exactly one set of outputs is stored, and the time to
recovery is printed."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from serve_app.jobs import JobStore
from tests.conftest import fast_app_args

pytestmark = pytest.mark.serve

APP = "songsmith-fault"
LEASE_S = 3.0


@pytest.fixture(scope="module")
def fault_app(serve_cluster, api_token, tmp_path_factory):
    storage = str(tmp_path_factory.mktemp("fault-storage"))
    args = fast_app_args(storage)
    args["jobs"].update(lease_s=LEASE_S, heartbeat_s=0.5, drain_timeout_s=0.5)
    args["ingress"]["deployment"] = {"num_replicas": 2, "max_ongoing_requests": 64, "num_cpus": 0.25}
    base = serve_cluster.deploy(args, name=APP, route_prefix="/fault", token=api_token)
    try:
        yield {"base_url": base, "storage": Path(storage), "jobs_db": f"sqlite:///{storage}/jobs.db", "args": args}
    finally:
        serve_cluster.delete(APP)


def test_killed_ingress_replica_job_still_succeeds_once(fault_app, serve_cluster, api_token):
    headers = {"Authorization": f"Bearer {api_token}"}
    body = {"prompt": "rock", "lyrics": "[verse]\nstill standing", "audio_duration": 60.0, "infer_step": 30}
    job_id = httpx.post(fault_app["base_url"] + "/v1/songs", json=body, headers=headers, timeout=30).json()["id"]
    store = JobStore(fault_app["jobs_db"], migrate=False)

    deadline = time.monotonic() + 60
    while (job := store.get(job_id)).status != "running" or not job.progress_step:
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    owner_pid = int(job.lease_owner.split("-")[1])
    replicas = {a.pid: a.name for a in serve_cluster.actors(f"SERVE_REPLICA::{APP}#Ingress#")}
    assert owner_pid in replicas, (owner_pid, replicas)  # the lease names a live ingress replica process

    os.kill(owner_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    deadline = killed_at + 120
    resumed_at = None
    while (job := store.get(job_id)).status not in ("succeeded", "failed", "cancelled"):
        if resumed_at is None and job.status == "running" and job.lease_owner and str(owner_pid) not in job.lease_owner:
            resumed_at = time.monotonic()
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    recovered_s = time.monotonic() - killed_at
    print(f"\nrecovery: job resumed {resumed_at - killed_at:.1f}s after the kill (lease {LEASE_S:g}s), "
          f"succeeded {recovered_s:.1f}s after it")
    assert job.status == "succeeded", job.error
    assert job.attempts == 2
    assert resumed_at - killed_at <= LEASE_S + 30
    files = sorted(p.name for p in (fault_app["storage"] / "objects" / "songs" / job_id).iterdir())
    assert files == ["audio.wav", "cover.png", "manifest.json"]
    manifest = json.loads((fault_app["storage"] / "objects" / "songs" / job_id / "manifest.json").read_text())
    assert manifest["song_id"] == job_id and manifest["result"]["seed"] == job.result["seed"]
    assert len(list((fault_app["storage"] / "objects" / "songs").iterdir())) == 1
    events = store.events(job_id)
    assert any(e.type == "status" and e.data.get("resumed") for e in events)


def test_redeploy_hands_running_jobs_back(fault_app, serve_cluster, api_token):
    """A rolling update replaces the ingress replicas: their running song goes back to the queue
    (not silently dropped) and a new replica finishes it."""
    headers = {"Authorization": f"Bearer {api_token}"}
    # Long enough (tens of seconds on the CPU kits) to still be rendering when the rollout lands.
    body = {"prompt": "jazz", "lyrics": "[verse]\nall the things", "audio_duration": 240.0, "infer_step": 60}
    job_id = httpx.post(fault_app["base_url"] + "/v1/songs", json=body, headers=headers, timeout=30).json()["id"]
    store = JobStore(fault_app["jobs_db"], migrate=False)
    deadline = time.monotonic() + 60
    while (job := store.get(job_id)).stage != "composing":
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    args = {**fault_app["args"], "ingress": {**fault_app["args"]["ingress"], "song_timeout_s": 1799.0}}
    serve_cluster.deploy(args, name=APP, route_prefix="/fault", token=api_token)  # new ingress version
    deadline = time.monotonic() + 180
    while (job := store.get(job_id)).status not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job.status == "succeeded", job.error
    events = store.events(job_id)
    assert any(e.type == "status" and e.data.get("released") for e in events), [e.data for e in events]
