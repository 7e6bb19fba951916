"""The process tree below a pid, read from /proc (Linux): what a stack started by one command owns.

For tests, benchmarks and `make serve`-style local runs, never the production path (see
`serve_app.localdev`).
"""

from __future__ import annotations

from pathlib import Path


def stat_fields(pid: int | str) -> list[str]:
    """The fields of `/proc/<pid>/stat` after the command name: [0] is the state, [1] the parent
    pid, [11] and [12] user and system CPU ticks (`man 5 proc` numbers them from 3).

    The name sits in parentheses and may itself hold spaces and ')', so the split is at the last ')'.
    Raises OSError for a process that is gone.
    """
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_tree(root: int) -> list[int]:
    """`root` and every process below it."""
    parent: dict[int, int] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                parent[int(p.name)] = int(stat_fields(p.name)[1])
            except (OSError, ValueError, IndexError):
                pass
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, ppid in parent.items():
            if ppid == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sorted(tree)


def cpu_seconds(pid: int | str) -> float:
    """User + system CPU time the process has used so far, in seconds (raises OSError if gone)."""
    import os

    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_rate(pid: int | str, window_s: float = 0.3) -> float:
    """CPU cores the process keeps busy over the next `window_s` seconds (0.0 when it is gone)."""
    import time

    try:
        t0, c0 = time.monotonic(), cpu_seconds(pid)
        time.sleep(window_s)
        return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)
    except OSError:
        return 0.0


def rss_bytes(pid: int | str) -> int:
    """Resident memory of the process (VmRSS), 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration, ValueError):
        return 0


class ManagedServer:
    """The lifecycle a locally started server shares (a Ray worker node, the tests' PostgreSQL
    and SeaweedFS): `with` starts it and, if the start fails half-way, closes what it left;
    `log_tail` reads the end of its `log_path`. Subclasses define `start()` (returning self),
    `close()` and `log_path`."""

    log_path: Path

    def start(self):  # pragma: no cover - defined by each server
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - defined by each server
        raise NotImplementedError

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
