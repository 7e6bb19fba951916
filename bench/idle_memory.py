"""Idle memory of the dev stack, started exactly as `make serve` starts it.

Runs `python -m serve_app.local_run configs/dev.yaml` (a copy with a free port and a scratch
storage dir), waits for `/health`, lets it settle, then reads every process in its tree:
RSS (what `ps` and most dashboards show; shared library pages count once per process) and PSS
(shared pages split between the processes that map them: the memory the stack really costs).
Then it makes `--songs` songs (description mode: every engine runs) and measures again once
idle: what a used dev server holds between songs. Prints one row per process and the totals;
`--plain` measures plain `serve run` instead, for comparison.

    .venv/bin/python -m bench.idle_memory [--plain] [--settle 15] [--songs 3]
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

if __package__ in (None, ""):  # run as a file (`python bench/idle_memory.py`): `bench` needs the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import REPO, machine, md_table, process_memory, process_tree, write_result  # noqa: E402
from serve_app.localdev.cluster import free_port  # noqa: E402

TARGET_GIB = 3.0


def measure(pid: int) -> list[dict]:
    rows = [m for p in process_tree(pid) if (m := process_memory(p))]
    return sorted(rows, key=lambda r: -r["rss"])


def table(rows: list[dict], used: dict[int, dict]) -> str:
    """One row per process (idle, and after the songs: `used`, by pid), then the totals."""
    mib = 2**20

    def total(ps, key):
        return sum(r.get(key, 0) for r in ps) / mib

    lines = md_table(["process", "idle RSS (MiB)", "idle PSS (MiB)", "used RSS (MiB)", "used PSS (MiB)"], [
        *([r["name"], f"{r['rss'] / mib:.0f}", f"{r.get('pss', 0) / mib:.0f}",
           f"{used.get(r['pid'], {}).get('rss', 0) / mib:.0f}", f"{used.get(r['pid'], {}).get('pss', 0) / mib:.0f}"]
          for r in rows),
        ["**total**", *(f"**{total(ps, key):.0f}**" for ps, key in ((rows, "rss"), (rows, "pss"),
                                                                    (used.values(), "rss"), (used.values(), "pss")))],
    ])
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plain", action="store_true", help="measure plain `serve run` (Ray's default cluster)")
    ap.add_argument("--settle", type=float, default=20.0, help="seconds to wait after /health before measuring")
    ap.add_argument("--songs", type=int, default=3, help="songs to make before the second measurement")
    ap.add_argument("--duration", type=float, default=30.0, help="audio seconds per song")
    ap.add_argument("--timeout", type=float, default=300.0)
    args = ap.parse_args()

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="idle-memory-") as tmp:
        doc = yaml.safe_load((REPO / "configs/dev.yaml").read_text())
        doc["http_options"]["port"] = port
        app = doc["applications"][0]["args"]
        app["storage"]["local_dir"] = f"{tmp}/storage"
        app["jobs"]["sqlite_path"] = f"{tmp}/jobs.db"
        config = Path(tmp) / "dev.yaml"
        config.write_text(yaml.safe_dump(doc))
        bin_dir = Path(sys.executable).parent
        cmd = ([str(bin_dir / "serve"), "run", str(config)] if args.plain
               else [sys.executable, "-m", "serve_app.local_run", str(config)])
        token = secrets.token_urlsafe(24)
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RAY_AUTH_MODE": "disabled",
               "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0", "API_BEARER_TOKEN": token}
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/log", "w"),
                                start_new_session=True)
        try:
            while True:
                if proc.poll() is not None:
                    sys.stderr.write(Path(f"{tmp}/log").read_text()[-4000:])
                    raise SystemExit(f"the stack exited with {proc.returncode} before /health answered")
                if time.monotonic() - t0 > args.timeout:
                    raise SystemExit(f"/health did not answer within {args.timeout:.0f} s")
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(1)
            ready_s = time.monotonic() - t0
            time.sleep(args.settle)
            rows = measure(proc.pid)
            for i in range(args.songs):
                r = httpx.post(f"http://127.0.0.1:{port}/generate-from-description", timeout=600,
                               headers={"Authorization": f"Bearer {token}"},
                               json={"full_described_song": f"a warm acoustic song about a harbour town, take {i}",
                                     "audio_duration": args.duration, "seed": i})
                r.raise_for_status()
            time.sleep(args.settle if args.songs else 0)
            used = {r["pid"]: r for r in measure(proc.pid)} if args.songs else {}
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    rss, pss = sum(r["rss"] for r in rows), sum(r.get("pss", 0) for r in rows)
    used_rss, used_pss = sum(r["rss"] for r in used.values()), sum(r.get("pss", 0) for r in used.values())
    mib = 2**20
    label = "plain `serve run`" if args.plain else "`make serve` (serve_app.local_run)"
    print(f"\n{label}: ready in {ready_s:.0f} s, {len(rows)} processes; idle = {args.settle:.0f} s after /health, "
          f"used = {args.settle:.0f} s after {args.songs} songs of {args.duration:g} s\n")
    print(table(rows, used))
    print(f"\nidle memory of the dev stack: RSS {rss / 2**30:.2f} GiB, PSS {pss / 2**30:.2f} GiB; after {args.songs} "
          f"songs: RSS {used_rss / 2**30:.2f} GiB, PSS {used_pss / 2**30:.2f} GiB (target < {TARGET_GIB:.0f} GiB)")
    write_result("idle_memory-plain" if args.plain else "idle_memory", {
        **machine(), "command": "serve run configs/dev.yaml" if args.plain else "make serve",
        "ready_s": ready_s, "settle_s": args.settle, "rss_gib": rss / 2**30, "pss_gib": pss / 2**30,
        "songs": args.songs, "song_duration_s": args.duration,
        "used_rss_gib": used_rss / 2**30, "used_pss_gib": used_pss / 2**30, "target_gib": TARGET_GIB,
        "processes": [{"name": r["name"], "rss_mib": r["rss"] / mib, "pss_mib": r.get("pss", 0) / mib,
                       "used_rss_mib": used.get(r["pid"], {}).get("rss", 0) / mib,
                       "used_pss_mib": used.get(r["pid"], {}).get("pss", 0) / mib} for r in rows]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
