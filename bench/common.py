"""Shared bench plumbing: a local stack, percentiles, process memory, result files."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO))

from serve_app.localdev.processes import process_tree  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def machine() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = "unknown"
    return {"machine": f"{platform.machine()} {os.cpu_count()} cores, {_mem_gib():.0f} GiB, no GPU",
            "commit": commit, "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "python": platform.python_version()}


def _mem_gib() -> float:
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1]) / 2**20


def stack_memory(pids=None) -> tuple[int, int]:
    """(RSS, PSS) summed over `pids` (default: this driver and the Ray cluster below it).

    RSS counts shared library pages once per process; PSS splits them, so it is the stack's real cost.
    """
    rows = [m for p in (ray_pids() if pids is None else pids) if (m := process_memory(p))]
    return sum(r["rss"] for r in rows), sum(r.get("pss", 0) for r in rows)


def stack_rss(pids) -> int:
    """RSS summed over `pids`, from /proc/<pid>/statm: microseconds per process, cheap enough to
    sample often (PSS needs smaps_rollup, which walks page tables: ~4 ms per large process)."""
    page, total = os.sysconf("SC_PAGE_SIZE"), 0
    for p in pids:
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            pass
    return total


def stack_cpu_seconds(pids=None) -> float:
    """User + system CPU seconds used so far by `pids` (default: this driver and its Ray cluster)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for p in ray_pids() if pids is None else pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def process_memory(pid: int) -> dict | None:
    """RSS and PSS of one process, in bytes, with a short name (Ray sets worker titles)."""
    try:
        argv = [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
        out = {"pid": pid, "name": short_name(argv)}
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                out[key.lower()] = int(rest.split()[0]) * 1024
    except (OSError, IndexError, ValueError):
        return None
    return out if "rss" in out else None


def short_name(argv: list[str]) -> str:
    """Ray titles its workers (`ray::ServeReplica:app:LLM`); Python helpers go by their script."""
    first = argv[0].split()[0] if argv and argv[0] else "?"
    if first.startswith("ray::") or first.startswith("ray-dashboard-"):
        return first
    base = os.path.basename(first)
    if base.startswith("python"):
        rest = iter(argv[1:])
        for arg in rest:
            if arg == "-m":
                return f"python -m {next(rest, '?')}"
            if arg and not arg.startswith("-"):
                return f"python {os.path.basename(arg)}"
    return base


def ray_pids() -> list[int]:
    """This driver and every process below it: the local Ray cluster it started (GCS, raylet,
    dashboard, workers and replicas) and nothing else on the machine."""
    return process_tree(os.getpid())


def write_result(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    return path
