"""More Ray nodes on this machine, joined to a running local cluster, and killed like a lost machine.

For tests and benchmarks (`tests/e2e/test_multinode.py`, `bench/chaos.py`), never the production
path (see `serve_app.localdev`). A `WorkerNode` is `ray start --address=<head> --block` in a
subprocess of its own session, with its own temp dir, raylet, object store and agents: Ray
schedules onto it exactly as onto another machine. `kill()` SIGKILLs every process of that session
at once (the `ray start` process, the raylet, its agents and every worker it started, replicas
included): what the cluster sees when a machine loses power. Nothing here calls `ray stop`; a node
left running at exit is killed by an atexit hook, and its temp dir removed.

    node = WorkerNode(ray.get_runtime_context().gcs_address, num_cpus=2, resources={"node_b": 1}).start()
    ...
    node.kill()          # node loss; node.wait_dead() until the GCS says so
    node.close()         # kill if still alive, remove the temp dir
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from serve_app.localdev.processes import ManagedServer, stat_fields

_LIVE: set[WorkerNode] = set()  # strong refs: a running node is never GC'd unkilled

NODE_MARKER_PREFIX = "localdev_node:"  # a resource each node carries (1 unit), to find it in ray.nodes()


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, session id) of every live process (zombies left out), in one /proc pass."""
    table = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                fields = stat_fields(p.name)
                if fields[0] != "Z":
                    table[int(p.name)] = (int(fields[1]), int(fields[3]))
            except (OSError, ValueError, IndexError):
                pass
    return table


def session_members(sid: int) -> list[int]:
    """Every live process of session `sid` (survives reparenting, unlike the process tree); zombies
    (dead, not yet reaped) are left out."""
    return sorted(pid for pid, (_, s) in _proc_table().items() if s == sid)


class WorkerNode(ManagedServer):
    """One extra Ray node on this machine (see the module docstring)."""

    def __init__(self, gcs_address: str, *, name: str = "node-b", num_cpus: float = 2, num_gpus: float = 0,
                 resources: dict[str, float] | None = None, object_store_mb: int = 256,
                 env: dict[str, str] | None = None):
        self.gcs_address = gcs_address
        self.name = name
        self.marker = f"{NODE_MARKER_PREFIX}{name}-{secrets.token_hex(3)}"
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        self.resources = {**(resources or {}), self.marker: 1}
        self.object_store_mb = object_store_mb
        self.env = env or {}
        self.temp_dir = Path(tempfile.mkdtemp(prefix=f"ray-{name}-")).resolve()
        self.log_path = self.temp_dir / "ray-start.log"
        self.proc: subprocess.Popen | None = None
        self.node_id: str | None = None
        self.killed = False
        self.started_s = 0.0  # seconds from `ray start` to the node alive in the GCS

    def __repr__(self) -> str:
        return f"WorkerNode({self.name!r}, node_id={self.node_id}, pid={self.proc and self.proc.pid})"

    # -- lifecycle --

    def start(self, timeout_s: float = 120, attempts: int = 3) -> WorkerNode:
        """Start the node and wait until the GCS lists it alive.

        On a busy machine a raylet can miss Ray's 30 s registration window ("timed out during
        startup", as `start_cluster` sees for the head): that start is killed and tried again with
        fresh ports, up to `attempts` times.
        """
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once(timeout_s)
            except RuntimeError as exc:
                if attempt == attempts or "timed out during startup" not in str(exc):
                    self.close()
                    raise
                self.kill()
                self.killed, self.proc = False, None
                self.marker = f"{NODE_MARKER_PREFIX}{self.name}-{secrets.token_hex(3)}"
                self.resources = {**{k: v for k, v in self.resources.items()
                                     if not k.startswith(NODE_MARKER_PREFIX)}, self.marker: 1}
            except BaseException:
                self.close()
                raise
        raise AssertionError("unreachable")

    def _start_once(self, timeout_s: float) -> WorkerNode:
        from serve_app.localdev.cluster import free_port

        env = {
            **os.environ,
            "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"),
            "RAY_USAGE_STATS_ENABLED": "0",
            # The Serve proxy of a worker node binds its own ports: the head's proxy already has
            # http_options.port on this machine (Ray uses these only on worker nodes).
            "RAY_SERVE_WORKER_PROXY_HTTP_PORT": str(free_port()),
            "RAY_SERVE_WORKER_PROXY_GRPC_PORT": str(free_port()),
            **self.env,
        }
        # A node's own address is picked from the GCS address (same IP: several raylets, one host).
        argv = [sys.executable, "-m", "ray.scripts.scripts", "start", f"--address={self.gcs_address}", "--block",
                f"--temp-dir={self.temp_dir}", f"--num-cpus={self.num_cpus}", f"--num-gpus={self.num_gpus}",
                f"--resources={json.dumps(self.resources)}",
                f"--object-store-memory={self.object_store_mb * 2**20}", "--disable-usage-stats",
                f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
                f"--metrics-export-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
                f"--dashboard-agent-grpc-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
                "--min-worker-port=0", "--max-worker-port=0"]  # 0: each worker binds a port the OS picks
        t0 = time.monotonic()
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        try:
            self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log,  # noqa: S603
                                         stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        _LIVE.add(self)
        try:
            deadline = t0 + timeout_s
            while (info := self.info()) is None or not info.get("Alive"):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"ray start for {self.name} exited {self.proc.returncode}:\n{self.log_tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"node {self.name} not alive after {timeout_s:.0f}s:\n{self.log_tail()}")
                time.sleep(0.25)
            self.node_id = info["NodeID"]
        except BaseException:
            self.kill()
            raise
        self.started_s = time.monotonic() - t0
        return self

    def info(self) -> dict | None:
        """This node's entry in `ray.nodes()` (the newest one carrying its marker)."""
        import ray

        mine = [n for n in ray.nodes() if self.marker in (n.get("Resources") or {}) or
                (self.node_id and n.get("NodeID") == self.node_id)]
        return mine[-1] if mine else None

    @property
    def alive(self) -> bool:
        """Running here (not killed) and alive in the GCS."""
        return self.proc is not None and self.proc.poll() is None and not self.killed and self.gcs_alive

    @property
    def gcs_alive(self) -> bool:
        """What the GCS says: a killed node stays "alive" there until its heartbeats are missed (~15 s)."""
        info = self.info()
        return bool(info and info.get("Alive"))

    def pids(self) -> list[int]:
        """Every live process of the node: its session (the `ray start` process, the raylet, the
        agents, the workers) and anything below them."""
        if self.proc is None:
            return []
        table = _proc_table()
        pids = {pid for pid, (_, sid) in table.items() if sid == self.proc.pid}
        if self.proc.pid in table:
            pids.add(self.proc.pid)
        frontier = list(pids)
        while frontier:  # and anything below them that left the session (setsid)
            parent = frontier.pop()
            for pid, (ppid, _) in table.items():
                if ppid == parent and pid not in pids:
                    pids.add(pid)
                    frontier.append(pid)
        return sorted(pids)

    def kill(self, timeout_s: float = 30) -> list[int]:
        """SIGKILL every process of the node at once (node loss); returns the pids killed.
        Repeats until none is left, so a worker started during the kill goes too."""
        killed: set[int] = set()
        self.killed = True
        deadline = time.monotonic() + timeout_s
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            if self.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=0.2)
            time.sleep(0.05)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        _LIVE.discard(self)
        return sorted(killed)

    def wait_dead(self, timeout_s: float = 120) -> float:
        """Seconds until the GCS marks the node dead (after `kill`)."""
        t0 = time.monotonic()
        while self.gcs_alive:
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"node {self.name} still alive in the GCS after {timeout_s:.0f}s")
            time.sleep(0.2)
        return time.monotonic() - t0

    def close(self) -> None:
        """Kill the node if it runs and remove its temp dir (its logs go with it)."""
        if self.proc is not None and (self.proc.poll() is None or self.pids()):
            self.kill()
        _LIVE.discard(self)
        shutil.rmtree(self.temp_dir, ignore_errors=True)



def _kill_all_at_exit() -> None:
    for node in list(_LIVE):
        with contextlib.suppress(Exception):
            node.close()


atexit.register(_kill_all_at_exit)
