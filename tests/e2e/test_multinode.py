"""Faults across nodes: a second Ray node on this machine (`serve_app.localdev.nodes.WorkerNode`:
its own raylet, object store, agents and temp dir) hosts one Music and one Ingress replica, and
is killed whole (SIGKILL of every process of the node: raylet, agents, workers) mid-song.

One app for the module, the job store on a private PostgreSQL server shared by both nodes' ingress
replicas, local storage (one machine: both nodes see the same folder). Placement: Music and
Ingress run 2 replicas at most one per node (so one on each node), LLM and Cover are pinned to
the head with its `node:__internal_head__` resource (a node loss here takes the Music and Ingress
replicas only). Music replicas take one request at a time, so two songs rendering at once are
one on each node.

Each test starts its node B if the previous one is gone and waits until Serve runs the
replicas on it (the replacements of the killed ones, pending until a node can take them). The
small chaos run (the CI variant of `python -m bench.chaos`) goes first, on the node the module
started with, so the module starts three nodes in all, not four.

Measured numbers (and what they mean) are in docs/reliability.md.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import secrets
import time
from pathlib import Path

import httpx
import pytest

from serve_app.jobs import JobStore
from serve_app.localdev.processes import cpu_rate
from tests.conftest import fast_app_args
from tests.support.postgres import PostgresServer, require_postgres

pytestmark = pytest.mark.serve

APP = "songsmith-multinode"
LEASE_S = 3.0
HEAD = "node:__internal_head__"  # a resource only the head node has
# A short song (1.5-5 s end to end on the kits here) with enough diffusion steps to still be
# rendering a second or two after its first step is reported.
SONG = {"prompt": "rock", "lyrics": "[verse]\nacross the nodes", "audio_duration": 10.0, "infer_step": 6}
LONG_SONG = {**SONG, "infer_step": 80}  # renders several seconds longer than SONG: still running when its node dies
TERMINAL = ("succeeded", "failed", "cancelled")
PLACED_ON_TWO_NODES = ("Ingress", "Music")


class Nodes:
    """The module's node B: started on demand, replaced once killed."""

    def __init__(self, cluster):
        self.cluster, self.node, self.started = cluster, None, 0

    def ensure(self):
        if self.node is None or not self.node.alive:
            if self.node is not None:
                self.node.close()
            self.started += 1
            self.node = self.cluster.add_node(f"node-b{self.started}", num_cpus=1)
            print(f"\n{self.node.name} alive {self.node.started_s:.1f}s after ray start")
        return self.node

    def close(self):
        if self.node is not None:
            self.node.close()


@pytest.fixture(scope="module")
def pg():
    require_postgres()
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="module")
def nodes(serve_cluster):
    holder = Nodes(serve_cluster)
    try:
        yield holder
    finally:
        holder.close()


@pytest.fixture(scope="module")
def stack(serve_cluster, nodes, pg, api_token, tmp_path_factory):
    storage = tmp_path_factory.mktemp("multinode-storage")
    nodes.ensure()
    env = {"JOBS_DATABASE_URL": pg.url}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    args = fast_app_args(str(storage))
    # One song per ingress replica at a time: of two songs submitted together, the replica the
    # proxy prefers (the head's, local to it) claims one and the other replica the next.
    args["jobs"].update(lease_s=LEASE_S, heartbeat_s=0.5, retry_base_s=0.5, max_attempts=3, drain_timeout_s=0.5,
                        concurrency=1)
    args["ingress"]["deployment"] = {"num_replicas": 2, "max_ongoing_requests": 64, "num_cpus": 0.25,
                                     "runtime_env": {"env_vars": env}}
    args["music"]["deployment"].update(num_replicas=2, max_ongoing_requests=1)
    placement = {"Ingress": {"max_replicas_per_node": 1}, "Music": {"max_replicas_per_node": 1},
                 "LLM": {"resources": {HEAD: 0.001}}, "Cover": {"resources": {HEAD: 0.001}}}
    chaos_token = secrets.token_urlsafe(24)  # the chaos test's own owner: its job audit lists its songs only
    t0 = time.monotonic()
    try:
        base = serve_cluster.deploy(args, name=APP, route_prefix="/multinode", token=f"{api_token},{chaos_token}",
                                    placement=placement)
        print(f"\n{APP} deployed in {time.monotonic() - t0:.0f}s")
        with httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {api_token}"}) as client:
            yield {"client": client, "store": JobStore(pg.url, migrate=False), "storage": Path(storage),
                   "base_url": base, "chaos_token": chaos_token}
    finally:
        serve_cluster.delete(APP)
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def replicas(cluster, deployment: str) -> dict[int, str]:
    """pid -> node id of the app's live replicas of `deployment`."""
    return {a.pid: a.node_id for a in cluster.actors(f"SERVE_REPLICA::{APP}#{deployment}#")}


def running_replicas(deployment: str) -> int:
    """Replicas Serve runs (initialized, healthy), not just placed."""
    from ray import serve

    dep = serve.status().applications[APP].deployments[deployment]
    return {getattr(k, "value", k): v for k, v in dep.replica_states.items()}.get("RUNNING", 0)


def healthy_on_both(cluster, stack, node, timeout_s: float = 240) -> dict[str, dict[int, str]]:
    """Wait until Ingress and Music run a replica on the head and on `node`, and /health is 200."""
    t0 = time.monotonic()
    want = {cluster.head_node_id, node.node_id}
    while True:
        placed = {d: replicas(cluster, d) for d in PLACED_ON_TWO_NODES}
        if all(set(p.values()) == want and len(p) == 2 and running_replicas(d) == 2 for d, p in placed.items()):
            try:
                if stack["client"].get("/health").status_code == 200:
                    print(f"replicas on both nodes {time.monotonic() - t0:.0f}s after {node.name} joined")
                    return placed
            except httpx.HTTPError:
                pass
        assert time.monotonic() - t0 < timeout_s, placed
        time.sleep(0.5)


def submit(client, i: int, song: dict = SONG) -> str:
    r = client.post("/v1/songs", json={**song, "seed": 1000 + i})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def wait_jobs(store, ids, cond, timeout_s: float = 120, poll_s: float = 0.05) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        jobs = {i: store.get(i) for i in ids}
        if all(cond(j) for j in jobs.values()):
            return jobs
        assert time.monotonic() < deadline, {i: (j.status, j.stage, j.progress_step) for i, j in jobs.items()}
        time.sleep(poll_s)


def rendering(job) -> bool:
    return job.status == "running" and job.stage == "composing" and bool(job.progress_step)


def owner_pid(job) -> int:
    return int(job.lease_owner.split("-")[1])  # worker ids are ingress-<pid>-<hex>


def song_files(storage: Path, job_id: str) -> list[str]:
    folder = storage / "objects" / "songs" / job_id
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def check_outputs_once(stack, job) -> None:
    assert song_files(stack["storage"], job.id) == ["audio.wav", "cover.png", "manifest.json"]
    manifest = json.loads((stack["storage"] / "objects" / "songs" / job.id / "manifest.json").read_text())
    assert manifest["song_id"] == job.id and manifest["result"]["seed"] == job.result["seed"]


def status_events(store, job_id) -> list[dict]:
    return [e.data for e in store.events(job_id) if e.type == "status"]


def test_chaos_small_llm_cover_ingress_killed(stack, serve_cluster, nodes):
    """The CI variant of `python -m bench.chaos`: songs through the async API (SSE, resumed when
    cut) while one replica each of LLM, Cover and Ingress is SIGKILLed in turn (Music replica kills
    are in test_faults.py and the node-loss tests below), each kill after the previous one
    recovered. Zero lost, zero duplicates, no 5xx but the documented 503s, every kill recovered.
    First in the module: it runs on the node B the module started with."""
    from bench.chaos import report, run_chaos

    node = nodes.ensure()
    healthy_on_both(serve_cluster, stack, node)
    songs_dir = stack["storage"] / "objects" / "songs"
    earlier = {p.name for p in songs_dir.iterdir()} if songs_dir.exists() else set()
    res = run_chaos(serve_cluster, APP, stack["base_url"], stack["chaos_token"], stack["storage"], songs=12,
                    concurrency=4, body={"prompt": "pop", "audio_duration": 10.0, "infer_step": 1},
                    interval=(0.5, 2.0), seed=16, deployments=("LLM", "Cover", "Ingress"), max_kills=3,
                    settle_s=1.0, ignore_folders=earlier)
    print("\n" + report(res))
    assert res["checks"]["every_deployment_killed"] and res["checks"]["every_kill_recovered"], res["kills"]
    assert res["checks"]["zero_lost"], res["lost"]
    assert res["checks"]["zero_duplicates"], (res["storage"], res["jobs"])
    assert res["checks"]["zero_undocumented_5xx"], res["undocumented_5xx"]


def test_node_loss_mid_song_finishes_on_the_remaining_node(stack, serve_cluster, nodes):
    """Node B dies whole while its Music replica renders a song (seen as that process keeping a
    core busy while a song is composing). Every song in flight succeeds on the head, each with
    exactly one set of outputs; a song whose ingress was on node B is resumed by the head's."""
    node = nodes.ensure()
    placed = healthy_on_both(serve_cluster, stack, node)
    client, store = stack["client"], stack["store"]
    b_ingress = {pid for pid, n in placed["Ingress"].items() if n == node.node_id}
    [b_music] = [pid for pid, n in placed["Music"].items() if n == node.node_id]
    ids, killed, owners = [], [], {}
    for round_ in range(4):  # two songs at a time (one per ingress); each music call goes to either node
        batch = [submit(client, 2 * round_ + k) for k in range(2)]
        ids += batch
        while not killed and any(store.get(i).status not in TERMINAL for i in batch):
            jobs = {i: store.get(i) for i in batch}
            if any(rendering(j) for j in jobs.values()) and cpu_rate(b_music, 0.2) > 0.2:
                owners = {i: owner_pid(j) for i, j in jobs.items() if j.status == "running"}
                killed = node.kill()
        if killed:
            break
    assert killed, "no song rendered on node B's Music replica in 4 rounds"
    t_kill = time.monotonic()
    print(f"node B killed ({len(killed)} processes) while rendering; running then: "
          + ", ".join(f"{i[:8]} on {'B' if p in b_ingress else 'head'}'s ingress" for i, p in owners.items()))
    ended: dict[str, float] = {}
    while len(ended) < len(ids):
        for i in ids:
            if i not in ended and store.get(i).status in TERMINAL:
                ended[i] = time.monotonic() - t_kill
        assert time.monotonic() - t_kill < 150, {i: store.get(i).status for i in ids}
        time.sleep(0.1)
    dead_s = node.wait_dead()
    final = {i: store.get(i) for i in ids}
    print(f"GCS marked node B dead {time.monotonic() - t_kill:.1f}s after the kill; "
          + ", ".join(f"{i[:8]} {final[i].status} {ended[i]:.1f}s after (attempt {final[i].attempts})"
                      for i in ids if ended[i] > 0 or i in owners))
    assert dead_s >= 0
    for i in ids:
        job = final[i]
        assert job.status == "succeeded", (job.error, status_events(store, i))
        check_outputs_once(stack, job)
        if i in owners and owners[i] in b_ingress:  # its ingress died with the node: another one resumed it
            assert job.attempts == 2
            assert any(e.get("resumed") for e in status_events(store, i)), status_events(store, i)
        # A song whose ingress lived (on the head) renders again on the head's Music replica in
        # the same attempt; one claimed by node B's ingress in the instant of the kill is resumed.
        assert job.attempts <= 2
    # Only the head's replicas are left (the replacements wait for a node that can take them).
    for d in PLACED_ON_TWO_NODES:
        assert set(replicas(serve_cluster, d).values()) == {serve_cluster.head_node_id}, d
    assert b_music in killed


def test_ingress_node_loss_other_ingress_resumes_the_song(stack, serve_cluster, nodes):
    """Two ingress replicas on two nodes share PostgreSQL. The node of the ingress running a song
    dies mid-song: the head's ingress claims the job once its lease expires and finishes it
    (attempt 2, a `resumed` status event), one set of outputs."""
    node = nodes.ensure()
    placed = healthy_on_both(serve_cluster, stack, node)
    client, store = stack["client"], stack["store"]
    b_ingress = {pid for pid, n in placed["Ingress"].items() if n == node.node_id}
    head_ingress = set(placed["Ingress"]) - b_ingress
    # A short song first: the head's ingress (local to the proxy, so it gets the POST) claims it at
    # once. Then a long one: the head's ingress is busy (one song at a time), node B's claims it.
    # Node B dies once the short song is done, so the head's ingress is free to resume the long one
    # as soon as its lease expires.
    ids, job = [], None
    for i in range(4):
        short = submit(client, 100 + 2 * i)
        wait_jobs(store, [short], lambda j: j.status != "queued", poll_s=0.01)
        long_ = submit(client, 101 + 2 * i, LONG_SONG)
        ids += [short, long_]
        j = wait_jobs(store, [long_], lambda j: j.status != "queued", poll_s=0.01)[long_]
        if j.status == "running" and owner_pid(j) in b_ingress:
            wait_jobs(store, [short], lambda j: j.status in TERMINAL)
            if (j := store.get(long_)).status == "running":
                job = j
                break
        wait_jobs(store, [short, long_], lambda j: j.status in TERMINAL)
    assert job is not None, "node B's ingress ran no long song in 4 tries"
    node.kill()
    t_kill = time.monotonic()
    assert store.get(job.id).status == "running"
    resumed_s, resumer = None, None
    while (cur := store.get(job.id)).status not in TERMINAL:
        if resumed_s is None and cur.status == "running" and cur.lease_owner != job.lease_owner:
            resumed_s, resumer = time.monotonic() - t_kill, owner_pid(cur)
        assert time.monotonic() - t_kill < 150, cur
        time.sleep(0.05)
    done_s = time.monotonic() - t_kill
    print(f"ingress node killed mid-song ({job.stage}): resumed {resumed_s:.1f}s after (lease {LEASE_S:g}s) by the "
          f"head's ingress, succeeded {done_s:.1f}s after, attempt {cur.attempts}")
    assert cur.status == "succeeded", (cur.error, status_events(store, job.id))
    assert resumer in head_ingress
    assert resumed_s <= LEASE_S + 5
    assert cur.attempts == 2
    assert [e for e in status_events(store, job.id) if e.get("status") == "running"][-1] == \
        {"status": "running", "attempt": 2, "resumed": True}
    check_outputs_once(stack, cur)
    for other in wait_jobs(store, ids, lambda j: j.status in TERMINAL).values():
        assert other.status == "succeeded", other.error
        check_outputs_once(stack, other)
