"""Throughput under load: songs/minute and latency percentiles at concurrency 1, 4, 8 and 16, with
1 and 2 music replicas; zero errors required; idle and peak RSS of the whole stack.

    .venv/bin/python -m bench.throughput [--duration 180] [--songs-per-level 16]

Songs go through the seed's `/generate-with-lyrics` (tags and lyrics given), so the music
deployment is the bottleneck being scaled; the LLM (title/categories) is the tiny Qwen2 kit.
Songs are 180 s long by default, the API's (and the seed's) default `audio_duration`.

Every level also records the CPU time the whole stack spent per song (all processes, from
/proc) and the ceiling that implies on this machine: cores x 60 / CPU-seconds-per-song. When
replicas share the cores with each other and with the rest of the stack, no design can exceed
it, so the table shows how close each level gets.
Writes bench/results/throughput.json (other durations: throughput-<N>s.json) and prints a table.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import secrets
import sys
import threading
import time
from pathlib import Path

import httpx

if __package__ in (None, ""):  # run as a file (`python bench/throughput.py`): `bench` needs the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import (machine, md_table, pct, ray_pids, stack_cpu_seconds, stack_memory, stack_rss,  # noqa: E402
                          write_result)
from serve_app.localdev.cluster import MODELS, config_args, merge, start_cluster, stop_cluster  # noqa: E402

LEVELS = (1, 4, 8, 16)


class RssSampler(threading.Thread):
    """Peak RSS every 0.5 s and peak PSS every 5 s of the stack, at a cost the stack barely feels.

    The sampler shares the CPUs it measures: reading PSS (smaps_rollup) for every process costs
    ~55 ms of CPU, which at 2 Hz would take ~11 % of a core away from the songs.
    """

    def __init__(self, period_s: float = 0.5, pss_every: int = 10):
        super().__init__(daemon=True)
        self.period_s, self.pss_every = period_s, pss_every
        self.peak, self.peak_pss, self._halt = 0, 0, threading.Event()

    def run(self):
        tick, pids = 0, ray_pids()
        while not self._halt.is_set():
            if tick % self.pss_every == 0:
                pids = ray_pids()  # replicas can restart; the process tree is re-read with PSS
                self.peak_pss = max(self.peak_pss, stack_memory(pids)[1])
            self.peak = max(self.peak, stack_rss(pids))
            tick += 1
            self._halt.wait(self.period_s)

    def stop(self) -> tuple[int, int]:
        self._halt.set()
        self.join()
        return self.peak, self.peak_pss


def app_args(storage_dir: str, music_replicas: int, concurrency: int) -> dict:
    return merge(config_args("configs/dev.yaml"), {
        "llm": {"engine": {"model": str(MODELS / "qwen2-tiny-kit"), "max_new_tokens_meta": 16},
                "deployment": {"num_replicas": 1}},
        "music": {"deployment": {"num_replicas": music_replicas, "max_ongoing_requests": 2}},
        "storage": {"local_dir": storage_dir},
        "jobs": {"sqlite_path": f"{storage_dir}/jobs.db", "concurrency": concurrency, "max_queued": 1000},
        "auth": {"generate_dev_token": False},
        "ingress": {"rate_limit": {"enabled": False}},
    })


def run_level(base: str, token: str, concurrency: int, songs: int, duration: float) -> dict:
    body = {"prompt": "rock, guitar", "lyrics": "[verse]\nhold the line\n[chorus]\nall night",
            "audio_duration": duration}
    latencies, errors = [], []

    def one(i: int):
        t0 = time.perf_counter()
        try:
            r = httpx.post(base + "/generate-with-lyrics", json={**body, "seed": i}, timeout=900,
                           headers={"Authorization": f"Bearer {token}"})
            if r.status_code != 200:
                errors.append(f"{r.status_code}: {r.text[:120]}")
                return
        except httpx.HTTPError as exc:
            errors.append(repr(exc))
            return
        latencies.append(time.perf_counter() - t0)

    cpu0, t0 = stack_cpu_seconds(), time.perf_counter()
    with cf.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(songs)))
    wall = time.perf_counter() - t0
    cpu_per_song = (stack_cpu_seconds() - cpu0) / max(1, len(latencies))
    return {"concurrency": concurrency, "songs": songs, "errors": len(errors), "error_samples": errors[:3],
            "wall_s": wall, "songs_per_min": 60 * len(latencies) / wall,
            "cpu_s_per_song": cpu_per_song, "cpu_ceiling_songs_per_min": (os.cpu_count() or 1) * 60 / cpu_per_song,
            "latency_s": {"p50": pct(latencies, 50), "p95": pct(latencies, 95), "p99": pct(latencies, 99)}}


def table(results: list[dict]) -> str:
    """One row per (music replicas, concurrency) level."""
    return "\n".join(md_table(
        ["music replicas", "concurrency", "songs/min", "p50 (s)", "p95 (s)", "p99 (s)", "errors", "CPU s/song",
         "CPU ceiling (songs/min)", "peak RSS / PSS (GiB)"],
        ([r["music_replicas"], r["concurrency"], f"{r['songs_per_min']:.1f}", f"{r['latency_s']['p50']:.2f}",
          f"{r['latency_s']['p95']:.2f}", f"{r['latency_s']['p99']:.2f}", r["errors"], f"{r['cpu_s_per_song']:.2f}",
          f"{r['cpu_ceiling_songs_per_min']:.1f}", f"{r['peak_rss_gib']:.2f} / {r['peak_pss_gib']:.2f}"]
         for r in results)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=180.0, help="Seconds of audio per song (API default 180).")
    p.add_argument("--songs-per-level", type=int, default=16, help="Songs at each concurrency level (>= level).")
    p.add_argument("--replicas", type=int, nargs="+", default=[1, 2], help="Music replica counts to test.")
    args = p.parse_args(argv)
    import tempfile

    token = secrets.token_urlsafe(24)
    results = []
    cluster = start_cluster(num_cpus=16, num_gpus=0, lean=True)  # Ray as `make serve` runs it
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in args.replicas:
                base = cluster.deploy(app_args(f"{tmp}/r{n}", n, concurrency=max(LEVELS)), name="tput",
                                      route_prefix="/", token=token, timeout_s=300)
                run_level(base, token, 1, 1, args.duration)  # warm-up
                time.sleep(2)
                idle, idle_pss = stack_memory()
                for c in LEVELS:
                    sampler = RssSampler()
                    sampler.start()
                    res = run_level(base, token, c, max(c, args.songs_per_level), args.duration)
                    peak, peak_pss = sampler.stop()
                    res.update(music_replicas=n, idle_rss_gib=idle / 2**30, idle_pss_gib=idle_pss / 2**30,
                               peak_rss_gib=peak / 2**30, peak_pss_gib=peak_pss / 2**30)
                    results.append(res)
                    print(f"replicas={n} c={c:2d}: {res['songs_per_min']:6.1f} songs/min  "
                          f"p50 {res['latency_s']['p50']:6.2f}s  p95 {res['latency_s']['p95']:6.2f}s  "
                          f"CPU {res['cpu_s_per_song']:.2f} s/song (ceiling {res['cpu_ceiling_songs_per_min']:.1f}/min)  "
                          f"errors {res['errors']}  peak RSS {res['peak_rss_gib']:.2f} GiB, PSS {res['peak_pss_gib']:.2f} GiB", flush=True)
                cluster.delete("tput")
    finally:
        stop_cluster()
    single = next(r["songs_per_min"] for r in results if r["music_replicas"] == 1 and r["concurrency"] == 1)
    checks = []
    for r in results:
        if r["concurrency"] == 16:
            target = 0.8 * r["music_replicas"] * single
            r["target_songs_per_min"] = target
            checks.append(r["errors"] == 0 and r["songs_per_min"] >= target)
    out = {**machine(), "duration_s": args.duration, "single_song_rate_per_min": single, "levels": results}
    path = write_result("throughput" if args.duration == 180 else f"throughput-{args.duration:g}s", out)
    print("\n" + table(results))
    print(f"\nsingle-song rate: {single:.1f} songs/min; targets at concurrency 16 (0 errors, >= 0.8 x replicas x "
          f"single rate): {'MET' if all(checks) else 'NOT MET'}")
    for r in results:
        if r["concurrency"] == 16:
            print(f"  {r['music_replicas']} replica(s): {r['songs_per_min']:.1f}/min vs target "
                  f"{r['target_songs_per_min']:.1f}, {r['errors']} errors; CPU ceiling {r['cpu_ceiling_songs_per_min']:.1f}/min "
                  f"({100 * r['songs_per_min'] / r['cpu_ceiling_songs_per_min']:.0f}% of it reached)")
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
