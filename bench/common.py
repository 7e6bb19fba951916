"""Shared bench plumbing: paths, git, percentiles, process memory and CPU from /proc, Markdown
tables, result files. The local Ray cluster helpers are serve_app.localdev's (shared with the tests).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from serve_app.localdev.processes import process_tree, stat_fields

REPO = Path(__file__).resolve().parents[1]  # the checkout the benchmarks run from
RESULTS = REPO / "bench" / "results"


def git(*args: str) -> str:
    """`git ARGS` in the repository, its stdout stripped (raises OSError / SubprocessError)."""
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=20).stdout.strip()


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def machine() -> dict:
    try:
        commit = git("rev-parse", "--short", "HEAD")
    except (OSError, subprocess.SubprocessError):
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


def self_rss() -> dict[str, int | None]:
    """This process's RSS now and its peak RSS (VmHWM) from /proc/self/status; None where unreadable."""
    out: dict[str, int | None] = {"rss_bytes": None, "rss_peak_bytes": None}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss_bytes"] = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                out["rss_peak_bytes"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


def stack_cpu_seconds(pids=None) -> float:
    """User + system CPU seconds used so far by `pids` (default: this driver and its Ray cluster)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for p in ray_pids() if pids is None else pids:
        try:
            fields = stat_fields(p)
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


def md_row(cells: Iterable[object]) -> str:
    """One Markdown table row: `| a | b |`; an empty cell is `| |`."""
    return "|" + "|".join(f" {c} " if c != "" else " " for c in cells) + "|"


def md_table(header: Sequence[str], rows: Iterable[Iterable[object]], align: str | None = None) -> list[str]:
    """A Markdown table as lines: the header, the separator, the rows. `align` has one letter per
    column: `l` (`---`, the default) or `r` (`---:`, right-aligned numbers)."""
    align = align or "l" * len(header)
    if len(align) != len(header):
        raise ValueError(f"align {align!r} does not match {len(header)} columns")
    return [md_row(header), "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|",
            *(md_row(r) for r in rows)]

