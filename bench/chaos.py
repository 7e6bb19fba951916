"""Chaos soak: songs through the async API while a killer SIGKILLs replicas of every deployment.

    .venv/bin/python -m bench.chaos [--songs 200] [--concurrency 16] [--duration 10] [--steps 1]
                                    [--kill-interval 5 15] [--seed 1] [--llm-engine vllm]

The stack is the dev stack (configs/dev.yaml, the tiny kits: Qwen2 on vLLM, ACE-Step, SDXL-Turbo,
local storage, the embedded SQLite job store with the config's lease, retries and backoff) with 2
Ingress and 2 Music replicas, so a killed replica has a sibling; LLM and Cover have one each, so
killing them stalls the songs that need them until Serve has replaced them.

Clients (`--concurrency` threads) each submit a song (`POST /v1/songs` with an Idempotency-Key,
retried after 429/503/5xx/connection errors with the same key), follow its event stream (SSE,
resumed with Last-Event-ID when cut, `GET /v1/songs/{id}` in between) to its end, then submit the
next. Meanwhile the killer, at random intervals (`--kill-interval`, seconds after the previous
kill recovered), SIGKILLs one live replica process of LLM, Music, Cover or Ingress in turn (found
through Ray's state API, as the fault tests do) and times the recovery: until Serve runs the
deployment's target replica count again, none of them the killed one.

At the end it checks and prints:
- lost: accepted songs (202/200 with an id) that did not end `succeeded` (must be 0);
- duplicates: every succeeded song's storage folder holds exactly one audio per take, one cover
  and one manifest naming it, there is no folder of a song that did not succeed, and the job list
  holds one job per Idempotency-Key (a retried POST made no second job);
- 5xx: every 5xx response seen, listed in three groups: the documented 503s (job store
  unavailable, with Retry-After); the 500s Serve's HTTP proxy answers for a request that was in
  flight on an Ingress replica when it was killed (no app code is left to answer it; a 500 with
  Starlette's plain "Internal Server Error" body within 10 s after an Ingress kill, and the proxy's
  own "Request failed" log lines beside them); and every other 5xx (must be 0);
- memory: RSS of the whole stack (every process of this Ray cluster) at the start, its peak and at
  the end, with the per-process-name breakdown at start and end (bounded: end <= 1.25 x start +
  512 MiB);
- songs/minute, and each kill's recovery time.

Writes bench/results/chaos.json (other sizes: chaos-<songs>x<concurrency>.json) and exits 1 if a
check fails.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import contextlib
import datetime as dt
import json
import os
import random
import secrets
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

if __package__ in (None, ""):  # run as a file: `bench` needs the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import machine, md_table, pct, process_memory, ray_pids, stack_rss, write_result  # noqa: E402
from serve_app.localdev.cluster import MODELS, config_args, merge  # noqa: E402

TERMINAL = ("succeeded", "failed", "cancelled")
DEPLOYMENTS = ("LLM", "Music", "Cover", "Ingress")
DOCUMENTED_503 = ("job store unavailable",)  # the API's own 503s (StoreUnavailable), with Retry-After
SONG_DEADLINE_S = 900.0


def app_args(storage_dir: str, *, llm_engine: str = "vllm", jobs: dict | None = None) -> dict:
    """configs/dev.yaml with the tiny Qwen2 kit, 2 Ingress and 2 Music replicas, local storage."""
    return merge(config_args("configs/dev.yaml"), {
        "llm": {"engine": {"model": str(MODELS / "qwen2-tiny-kit"), "engine": llm_engine,
                           "max_new_tokens_lyrics": 48, "max_new_tokens_tags": 24, "max_new_tokens_meta": 16}},
        "music": {"deployment": {"num_replicas": 2}},
        "ingress": {"deployment": {"num_replicas": 2, "max_ongoing_requests": 256, "num_cpus": 0.25},
                    "rate_limit": {"enabled": False}},
        "storage": {"local_dir": storage_dir},
        "jobs": {"sqlite_path": f"{storage_dir}/jobs.db", "max_queued": 1000, **(jobs or {})},
        "auth": {"generate_dev_token": False},
    })


# -- clients -------------------------------------------------------------------------------


@dataclass
class SongRecord:
    index: int
    job_id: str = ""
    status: str = "not accepted"
    attempts: int = 0
    error: str | None = None
    takes: int = 0
    submitted_s: float = 0.0  # from the run's start
    ended_s: float = 0.0
    post_tries: int = 0
    stream_reconnects: int = 0
    lost_attempts: list[dict] = field(default_factory=list)  # status events of retries and resumes


@dataclass
class Observed:
    """Every response and transport error the clients saw, for the 5xx audit."""

    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    codes: collections.Counter = field(default_factory=collections.Counter)
    bad_5xx: list[dict] = field(default_factory=list)
    documented_503: int = 0
    transport_errors: collections.Counter = field(default_factory=collections.Counter)
    refusals: collections.Counter = field(default_factory=collections.Counter)  # 4xx: code and detail

    def classify(self, kills: list[Kill], window_s: float = 10.0) -> tuple[list[dict], list[dict]]:
        """The undocumented 5xx split in two: those of requests that were in flight on an Ingress
        replica when it was killed (Serve's proxy answers 500 with no body of the app's: no app
        code is left to answer; seen within `window_s` after an Ingress kill), and the rest."""
        ingress_kills = [k.t_s for k in kills if k.deployment == "Ingress"]
        on_killed, other = [], []
        for e in self.bad_5xx:
            hit = e["status"] == 500 and e["body"].strip() == "Internal Server Error" and any(
                0 <= e["t_s"] - t <= window_s for t in ingress_kills)
            (on_killed if hit else other).append(e)
        return on_killed, other

    def response(self, t0: float, what: str, r: httpx.Response, body: str = "") -> None:
        with self.lock:
            self.codes[r.status_code] += 1
            if 400 <= r.status_code < 500:
                try:
                    detail = str(r.json().get("detail", ""))[:80]
                except (ValueError, AttributeError, httpx.ResponseNotRead):
                    detail = ""
                self.refusals[f"{r.status_code} {what}: {detail}"] += 1
            if r.status_code >= 500:
                if r.status_code == 503 and any(d in body for d in DOCUMENTED_503) and "retry-after" in r.headers:
                    self.documented_503 += 1
                else:
                    self.bad_5xx.append({"t_s": round(time.monotonic() - t0, 2), "request": what,
                                         "status": r.status_code, "body": body[:300]})

    def transport(self, what: str, exc: BaseException) -> None:
        with self.lock:
            self.transport_errors[f"{what.split()[0]} {type(exc).__name__}"] += 1


class Clients:
    """`concurrency` threads, each submitting and following one song at a time."""

    def __init__(self, base: str, token: str, *, songs: int, concurrency: int, body: dict, key_prefix: str,
                 more=None):
        self.base, self.songs, self.concurrency = base, songs, concurrency
        self.more = more  # past `songs`, keep submitting while more() is true (up to 4 x songs)
        self._next_index = 0
        self.body, self.key_prefix = body, key_prefix
        self.http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"},
                                 timeout=httpx.Timeout(30, read=60),
                                 limits=httpx.Limits(max_connections=4 * concurrency + 8))
        self.observed = Observed()
        self.records: list[SongRecord] = []
        self.in_flight = 0
        self._lock = threading.Lock()
        self.t0 = time.monotonic()

    def run(self) -> list[SongRecord]:
        self.t0 = time.monotonic()
        with cf.ThreadPoolExecutor(self.concurrency, thread_name_prefix="chaos-client") as pool:
            for f in [pool.submit(self._worker) for _ in range(self.concurrency)]:
                f.result()
        self.records.sort(key=lambda r: r.index)
        return self.records

    def _take(self) -> int | None:
        with self._lock:
            i = self._next_index
            if i >= self.songs and not (self.more is not None and self.more() and i < 4 * self.songs):
                return None
            self._next_index += 1
            return i

    def _worker(self) -> None:
        while (i := self._take()) is not None:
            rec = self.one(i)
            with self._lock:
                self.records.append(rec)

    def _get(self, what: str, path: str, **kw) -> httpx.Response | None:
        try:
            r = self.http.get(path, **kw)
        except httpx.HTTPError as exc:
            self.observed.transport(what, exc)
            return None
        self.observed.response(self.t0, what, r, r.text if r.status_code >= 500 else "")
        return r

    def one(self, i: int) -> SongRecord:
        rec = SongRecord(i, submitted_s=time.monotonic() - self.t0)
        with self._lock:
            self.in_flight += 1
        try:
            self._submit(rec)
            if rec.job_id:
                self._follow(rec)
        finally:
            with self._lock:
                self.in_flight -= 1
            rec.ended_s = time.monotonic() - self.t0
        return rec

    def events(self, job_id: str) -> list[dict]:
        """Every event of a finished job (its SSE stream from the start)."""
        out, event = [], {}
        with self.http.stream("GET", f"/v1/songs/{job_id}/events", headers={"Last-Event-ID": "0"}) as r:
            for line in r.iter_lines() if r.status_code == 200 else ():
                if line.startswith("data:"):
                    event = json.loads(line[5:].strip())
                elif line == "" and event:
                    out.append(event)
                    event = {}
        return out

    def _submit(self, rec: SongRecord) -> None:
        body = {**self.body, "lyrics": f"[verse]\nchaos number {rec.index}", "seed": rec.index}
        headers = {"Idempotency-Key": f"{self.key_prefix}-{rec.index}"}
        deadline = time.monotonic() + SONG_DEADLINE_S
        while time.monotonic() < deadline:
            rec.post_tries += 1
            try:
                r = self.http.post("/v1/songs", json=body, headers=headers)
            except httpx.HTTPError as exc:  # the ingress died under the request: retry, same key
                self.observed.transport("POST /v1/songs", exc)
                time.sleep(1.0)
                continue
            self.observed.response(self.t0, "POST /v1/songs", r, r.text if r.status_code >= 500 else "")
            if r.status_code in (200, 202):
                rec.job_id, rec.status = r.json()["id"], "accepted"
                return
            if r.status_code in (429, 503) or r.status_code >= 500:
                time.sleep(min(float(r.headers.get("retry-after", "1") or 1), 5.0))
                continue
            rec.status, rec.error = "rejected", f"{r.status_code}: {r.text[:200]}"
            return
        rec.status = "not accepted"

    def _follow(self, rec: SongRecord) -> None:
        """SSE to the terminal event (resumed with Last-Event-ID), then the job itself."""
        last_id, deadline = 0, time.monotonic() + SONG_DEADLINE_S
        while time.monotonic() < deadline:
            ended = False
            try:
                with self.http.stream("GET", f"/v1/songs/{rec.job_id}/events",
                                      headers={"Last-Event-ID": str(last_id)}) as r:
                    if r.status_code != 200:
                        body = r.read().decode(errors="replace") if r.status_code >= 500 else ""
                        self.observed.response(self.t0, "GET /events", r, body)
                    else:
                        self.observed.response(self.t0, "GET /events", r)
                        event = {}
                        for line in r.iter_lines():
                            if line.startswith("id:"):
                                event["id"] = int(line[3:].strip())
                            elif line.startswith("data:"):
                                event["data"] = json.loads(line[5:].strip())
                            elif line == "" and event:
                                last_id = event.get("id", last_id)
                                data = (event.get("data") or {}).get("data") or {}
                                if data.get("status") in TERMINAL:
                                    ended = True
                                    break
                                event = {}
            except (httpx.HTTPError, json.JSONDecodeError) as exc:  # cut: the ingress died, or a timeout
                self.observed.transport("GET /events", exc)
            r = self._get("GET /v1/songs/{id}", f"/v1/songs/{rec.job_id}")
            if r is not None and r.status_code == 200:
                job = r.json()
                rec.status, rec.attempts, rec.error = job["status"], job["attempts"], job["error"]
                if job["status"] in TERMINAL:
                    rec.takes = len((job.get("result") or {}).get("takes") or []) or (1 if job["result"] else 0)
                    return
            elif ended:
                pass  # the stream said it ended but the job read failed: read it again
            rec.stream_reconnects += 1
            time.sleep(0.5)
        rec.status = rec.status if rec.status in TERMINAL else "no end seen"


# -- the killer ------------------------------------------------------------------------------


@dataclass
class Kill:
    deployment: str
    pid: int
    t_s: float  # from the run's start
    songs_in_flight: int
    recovered_s: float | None = None  # until the target replica count runs again, the killed one gone
    note: str = ""
    wall: float = 0.0  # time.time() of the kill, to tie songs' retry events to it
    songs_hit: int = 0  # songs that lost an attempt to this kill (a retry or a resume after it)


class Killer(threading.Thread):
    def __init__(self, cluster, app: str, clients: Clients, *, interval: tuple[float, float], seed: int,
                 deployments=DEPLOYMENTS, max_kills: int | None = None, recovery_timeout_s: float = 300):
        super().__init__(daemon=True, name="chaos-killer")
        self.cluster, self.app, self.clients = cluster, app, clients
        self.interval, self.rng = interval, random.Random(seed)
        self.deployments, self.max_kills = list(deployments), max_kills
        self.recovery_timeout_s = recovery_timeout_s
        self.kills: list[Kill] = []
        self.halt = threading.Event()
        self.error: str | None = None

    def replicas(self, deployment: str) -> dict[int, str]:
        return {a.pid: a.actor_id for a in self.cluster.actors(f"SERVE_REPLICA::{self.app}#{deployment}#")}

    def running(self, deployment: str) -> tuple[int, bool]:
        """(RUNNING replicas, HEALTHY) of the deployment, from Serve's status."""
        from ray import serve

        dep = serve.status().applications[self.app].deployments[deployment]
        states = {getattr(k, "value", k): v for k, v in dep.replica_states.items()}
        return states.get("RUNNING", 0), getattr(dep.status, "value", dep.status) == "HEALTHY"

    def run(self) -> None:
        order: list[str] = []
        try:
            while not self.halt.is_set() and (self.max_kills is None or len(self.kills) < self.max_kills):
                if self.halt.wait(self.rng.uniform(*self.interval)):
                    break
                if not order:
                    order = self.deployments[:]
                    self.rng.shuffle(order)
                self.kill(order.pop())
        except Exception as exc:  # noqa: BLE001 - reported with the results
            self.error = f"{type(exc).__name__}: {exc}"

    def kill(self, deployment: str) -> Kill:
        before = self.replicas(deployment)
        if not before:
            raise RuntimeError(f"no live {deployment} replica to kill")
        want = len(before)  # fixed replica counts: what Serve must run again
        pid = self.rng.choice(sorted(before))
        os.kill(pid, signal.SIGKILL)
        t_kill = time.monotonic()
        k = Kill(deployment, pid, round(t_kill - self.clients.t0, 2), self.clients.in_flight, wall=time.time())
        self.kills.append(k)
        print(f"  [{k.t_s:7.1f}s] killed {deployment} replica pid {pid} ({k.songs_in_flight} songs in flight)",
              flush=True)
        while time.monotonic() - t_kill < self.recovery_timeout_s:
            time.sleep(0.5)
            try:
                running, healthy = self.running(deployment)
                now = self.replicas(deployment)
            except Exception:  # noqa: BLE001 - the state API can stall while a replica dies
                continue
            if healthy and running >= want and pid not in now and len(now) >= want:
                k.recovered_s = round(time.monotonic() - t_kill, 2)
                print(f"  [{time.monotonic() - self.clients.t0:7.1f}s] {deployment} back to {want} running "
                      f"replicas {k.recovered_s:.1f}s after the kill", flush=True)
                return k
        k.note = f"not recovered in {self.recovery_timeout_s:.0f}s"
        return k


# -- memory ----------------------------------------------------------------------------------


def by_name(pids) -> dict[str, dict[str, int]]:
    """RSS summed per process name (Ray titles its workers), with the process count."""
    out: dict[str, dict[str, int]] = {}
    for p in pids:
        if (m := process_memory(p)) is not None:
            name = m["name"]
            if name.startswith("ray::ServeReplica:"):
                name = "replica " + name.rsplit(":", 1)[-1]
            row = out.setdefault(name, {"processes": 0, "rss": 0})
            row["processes"] += 1
            row["rss"] += m["rss"]
    return out


class RssSampler(threading.Thread):
    def __init__(self, pids_fn=ray_pids, period_s: float = 1.0):
        super().__init__(daemon=True, name="chaos-rss")
        self.pids_fn, self.period_s = pids_fn, period_s
        self.peak, self.samples, self._halt = 0, [], threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self._halt.is_set():
            rss = stack_rss(self.pids_fn())
            self.peak = max(self.peak, rss)
            self.samples.append((round(time.monotonic() - t0, 1), rss))
            self._halt.wait(self.period_s)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return self.peak


# -- the audit -------------------------------------------------------------------------------


def proxy_failures() -> list[str]:
    """The requests Serve's HTTP proxy on this node logged as failed (`Request failed: <error>`),
    cut short: what a 5xx that no app code answered was."""
    import glob

    try:
        import ray

        logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs" / "serve"
    except Exception:  # noqa: BLE001 - not connected, or Ray moved its internals
        return []
    out = []
    for path in sorted(glob.glob(str(logs / "proxy_*.log"))):
        with contextlib.suppress(OSError):
            for line in Path(path).read_text(errors="replace").splitlines():
                if "Request failed" in line:
                    out.append(line[line.index("Request failed"):][:240])
    return out



def audit_storage(storage_dir: Path, records: list[SongRecord], ignore: set[str] = frozenset()) -> dict:
    """One audio per take, one cover, one manifest per succeeded song; no other song folders
    (but those of `ignore`, songs made before the run)."""
    songs_dir = storage_dir / "objects" / "songs"
    folders = {p.name: sorted(f.name for f in p.iterdir()) for p in songs_dir.iterdir()
               if p.name not in ignore} if songs_dir.exists() else {}
    succeeded = {r.job_id: r for r in records if r.status == "succeeded"}
    bad, missing = [], []
    for job_id, rec in succeeded.items():
        files = folders.get(job_id)
        if files is None:
            missing.append(job_id)
            continue
        takes = max(rec.takes, 1)
        want = sorted(["audio.wav", *(f"audio-{k}.wav" for k in range(1, takes)), "cover.png", "manifest.json"])
        manifest_ok = False
        try:
            manifest_ok = json.loads((songs_dir / job_id / "manifest.json").read_text())["song_id"] == job_id
        except (OSError, ValueError, KeyError):
            pass
        if files != want or not manifest_ok:
            bad.append({"job_id": job_id, "files": files, "want": want, "manifest_names_it": manifest_ok})
    orphans = {k: v for k, v in folders.items() if k not in succeeded}
    return {"folders": len(folders), "succeeded": len(succeeded), "wrong_contents": bad,
            "missing_folders": missing, "orphan_folders": orphans}


def audit_jobs(http: httpx.Client, records: list[SongRecord]) -> dict:
    """The token's job list: exactly the accepted songs, one job each."""
    ids, cursor = [], None
    while True:
        r = http.get("/v1/songs", params={"limit": 100, **({"cursor": cursor} if cursor else {})})
        r.raise_for_status()
        page = r.json()
        ids += [j["id"] for j in page["items"]]
        if not (cursor := page.get("next_cursor")):
            break
    accepted = [r.job_id for r in records if r.job_id]
    return {"listed": len(ids), "accepted": len(accepted), "distinct_accepted": len(set(accepted)),
            "unexpected": sorted(set(ids) - set(accepted)), "unlisted": sorted(set(accepted) - set(ids))}


# -- one run ---------------------------------------------------------------------------------


def run_chaos(cluster, app: str, base: str, token: str, storage_dir: Path, *, songs: int, concurrency: int,
              body: dict, interval: tuple[float, float], seed: int, deployments=DEPLOYMENTS,
              max_kills: int | None = None, settle_s: float = 10.0, pids_fn=ray_pids,
              ignore_folders: set[str] = frozenset()) -> dict:
    """Songs under a killer on a deployed app; returns the measurements and the checks."""
    killer_box: list[Killer] = []
    # With max_kills, songs go on past `songs` until every kill is made (and recovered).
    more = (lambda: killer_box[0].is_alive()) if max_kills is not None else None
    clients = Clients(base, token, songs=songs, concurrency=concurrency, body=body,
                      key_prefix=f"chaos-{secrets.token_hex(4)}", more=more)
    start_pids = pids_fn()
    start_rss, start_names = stack_rss(start_pids), by_name(start_pids)
    sampler = RssSampler(pids_fn)
    sampler.start()
    killer = Killer(cluster, app, clients, interval=interval, seed=seed, deployments=deployments,
                    max_kills=max_kills)
    killer_box.append(killer)
    killer.start()
    t0 = time.monotonic()
    records = clients.run()
    wall = time.monotonic() - t0
    killer.halt.set()
    killer.join(timeout=killer.recovery_timeout_s + 30)
    time.sleep(settle_s)  # let the last replacement settle before the final memory reading
    peak = sampler.stop()
    end_pids = pids_fn()
    end_rss, end_names = stack_rss(end_pids), by_name(end_pids)
    for rec in records:  # why songs lost attempts: the retry and resume events
        if rec.attempts > 1:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                rec.lost_attempts = [
                    {"at": e["created_at"], **e["data"]} for e in clients.events(rec.job_id)
                    if e.get("type") == "status" and (e["data"].get("retry") or e["data"].get("resumed"))]
    for rec in records:
        for e in rec.lost_attempts:
            at = dt.datetime.fromisoformat(e["at"].replace("Z", "+00:00")).timestamp()
            before = [k for k in killer.kills if k.wall <= at + 0.5]
            if before:
                before[-1].songs_hit += 1
    storage = audit_storage(storage_dir, records, ignore_folders)
    jobs = audit_jobs(clients.http, records)
    clients.http.close()

    accepted = [r for r in records if r.job_id]
    succeeded = [r for r in accepted if r.status == "succeeded"]
    lost = [asdict(r) for r in accepted if r.status != "succeeded"]
    obs = clients.observed
    on_killed_ingress, other_5xx = obs.classify(killer.kills)
    recoveries = collections.defaultdict(list)
    for k in killer.kills:
        if k.recovered_s is not None:
            recoveries[k.deployment].append(k.recovered_s)
    checks = {
        "zero_lost": not lost and len(accepted) == len(records),
        "zero_duplicates": not storage["wrong_contents"] and not storage["missing_folders"]
        and not storage["orphan_folders"] and jobs["listed"] == jobs["distinct_accepted"] == len(accepted)
        and not jobs["unexpected"],
        "zero_undocumented_5xx": not other_5xx,
        "memory_bounded": end_rss <= 1.25 * start_rss + 512 * 2**20,
        "every_deployment_killed": all(any(k.deployment == d for k in killer.kills) for d in deployments),
        "every_kill_recovered": all(k.recovered_s is not None for k in killer.kills) and killer.error is None,
    }
    return {
        "songs": len(records), "concurrency": concurrency, "body": body, "kill_interval_s": list(interval), "seed": seed,
        "wall_s": round(wall, 1), "songs_per_min": round(60 * len(succeeded) / wall, 2),
        "accepted": len(accepted), "succeeded": len(succeeded), "lost": lost,
        "attempts": dict(collections.Counter(r.attempts for r in accepted)),
        "post_retries": sum(r.post_tries - 1 for r in records),
        "stream_reconnects": sum(r.stream_reconnects for r in records),
        "latency_s": {"p50": round(pct([r.ended_s - r.submitted_s for r in succeeded], 50), 2),
                      "p95": round(pct([r.ended_s - r.submitted_s for r in succeeded], 95), 2),
                      "max": round(max((r.ended_s - r.submitted_s for r in succeeded), default=0), 2)},
        "http_codes": {str(k): v for k, v in sorted(obs.codes.items())},
        "documented_503": obs.documented_503, "in_flight_on_killed_ingress_500": on_killed_ingress,
        "undocumented_5xx": other_5xx, "proxy_request_failures_logged": proxy_failures(),
        "transport_errors": dict(obs.transport_errors), "refusals_4xx": dict(obs.refusals),
        "kills": [asdict(k) for k in killer.kills], "killer_error": killer.error,
        "lost_attempt_causes": dict(collections.Counter(cause(e) for r in records for e in r.lost_attempts)),
        "recovery_s": {d: {"n": len(v), "min": min(v), "median": pct(v, 50), "max": max(v)}
                       for d, v in sorted(recoveries.items())},
        "rss": {"start_gib": round(start_rss / 2**30, 3), "peak_gib": round(peak / 2**30, 3),
                "end_gib": round(end_rss / 2**30, 3), "start_processes": len(start_pids),
                "end_processes": len(end_pids),
                "start_by_name_mib": {k: {"processes": v["processes"], "rss_mib": round(v["rss"] / 2**20)}
                                      for k, v in sorted(start_names.items())},
                "end_by_name_mib": {k: {"processes": v["processes"], "rss_mib": round(v["rss"] / 2**20)}
                                    for k, v in sorted(end_names.items())},
                "samples": sampler.samples[::max(1, len(sampler.samples) // 120)]},
        "storage": storage, "jobs": jobs, "checks": checks, "passed": all(checks.values()),
    }


def cause(event: dict) -> str:
    """A lost attempt in a few words: the step and the exception type ("music failed: ActorDiedError")."""
    if event.get("resumed"):
        return "resumed after its ingress died"
    return ": ".join((event.get("error") or "retry").split(": ")[:2])


def report(res: dict) -> str:
    rss = res["rss"]
    lines = [
        f"songs {res['songs']} at concurrency {res['concurrency']} in {res['wall_s']:.0f}s "
        f"({res['songs_per_min']:.1f} songs/min): accepted {res['accepted']}, succeeded {res['succeeded']}, "
        f"lost {len(res['lost'])}",
        f"attempts per song: {res['attempts']}; POST retries {res['post_retries']}, "
        f"stream reconnects {res['stream_reconnects']}",
        f"duplicates: {len(res['storage']['wrong_contents'])} wrong folders, "
        f"{len(res['storage']['orphan_folders'])} orphan folders, {len(res['storage']['missing_folders'])} missing; "
        f"jobs listed {res['jobs']['listed']} for {res['jobs']['distinct_accepted']} accepted",
        f"HTTP codes {res['http_codes']}; documented 503s {res['documented_503']}; 500s of requests in flight "
        f"on a killed Ingress replica {len(res['in_flight_on_killed_ingress_500'])} (Serve's proxy logged "
        f"{len(res['proxy_request_failures_logged'])} failed requests); other 5xx {len(res['undocumented_5xx'])}; "
        f"transport errors {res['transport_errors']}",
        *(f"  500 on a killed Ingress: {e}" for e in res["in_flight_on_killed_ingress_500"][:20]),
        *(f"  proxy log: {line}" for line in res["proxy_request_failures_logged"][:10]),
        *(f"  other 5xx: {e}" for e in res["undocumented_5xx"][:20]),
        *(f"  4xx: {n} x {k}" for k, n in res["refusals_4xx"].items()),
        f"stack RSS: start {rss['start_gib']:.2f} GiB ({rss['start_processes']} processes), peak "
        f"{rss['peak_gib']:.2f} GiB, end {rss['end_gib']:.2f} GiB ({rss['end_processes']} processes)",
        "",
        *md_table(["kill at (s)", "deployment", "songs in flight", "songs that lost an attempt", "recovered after (s)"],
                  ([f"{k['t_s']:.0f}", k["deployment"], k["songs_in_flight"], k["songs_hit"],
                    f"{k['recovered_s']:.1f}" if k["recovered_s"] is not None else k["note"]]
                   for k in res["kills"]), align="rlrrr"),
        "",
        "lost attempts by cause: " + (", ".join(f"{c}: {n}" for c, n in res["lost_attempt_causes"].items())
                                      or "none"),
        "",
        "checks: " + ", ".join(f"{k} {'OK' if v else 'FAILED'}" for k, v in res["checks"].items()),
    ]
    if res["lost"]:
        lines += [f"  lost: {r['job_id'] or r['index']} {r['status']} attempts {r['attempts']}: {r['error']}"
                  for r in res["lost"][:20]]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--songs", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--duration", type=float, default=10.0, help="Seconds of audio per song.")
    p.add_argument("--steps", type=int, default=1, help="Diffusion steps per song.")
    p.add_argument("--kill-interval", type=float, nargs=2, default=(5.0, 15.0), metavar=("MIN", "MAX"),
                   help="Seconds between a kill's recovery and the next kill (uniform).")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--llm-engine", choices=("vllm", "transformers"), default="vllm")
    p.add_argument("--out", default=None, help="Result name under bench/results (default chaos or chaos-NxC).")
    args = p.parse_args(argv)
    import tempfile

    from serve_app.localdev.cluster import start_cluster, stop_cluster

    warm_token, token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)  # the run's own owner
    body = {"prompt": "pop, synth, drums", "audio_duration": args.duration, "infer_step": args.steps}
    cluster = start_cluster(num_cpus=16, num_gpus=0)  # with the dashboard: the killer needs the state API
    try:
        with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
            t0 = time.monotonic()
            base = cluster.deploy(app_args(tmp, llm_engine=args.llm_engine), name="chaos", route_prefix="/",
                                  token=f"{warm_token},{token}", timeout_s=600)
            deploy_s = time.monotonic() - t0
            print(f"deployed in {deploy_s:.0f}s; warming up", flush=True)
            warm = Clients(base, warm_token, songs=2, concurrency=2, body=body, key_prefix="warm")
            warm_ids = {r.job_id for r in warm.run()}
            print(f"chaos: {args.songs} songs at concurrency {args.concurrency}, kills every "
                  f"{args.kill_interval[0]:g}-{args.kill_interval[1]:g}s", flush=True)
            res = run_chaos(cluster, "chaos", base, token, Path(tmp), songs=args.songs,
                            concurrency=args.concurrency, body=body, interval=tuple(args.kill_interval),
                            seed=args.seed, ignore_folders=warm_ids)
    finally:
        stop_cluster()
    out = {**machine(), "command": "python -m bench.chaos " + " ".join(argv if argv is not None else sys.argv[1:]),
           "deploy_s": round(deploy_s, 1), "llm_engine": args.llm_engine, **res}
    name = args.out or ("chaos" if (args.songs, args.concurrency) == (200, 16) else
                        f"chaos-{args.songs}x{args.concurrency}")
    path = write_result(name, out)
    print("\n" + report(res))
    print(f"written: {path}")
    return 0 if res["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
