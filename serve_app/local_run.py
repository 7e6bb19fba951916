"""`serve run CONFIG` on a lean single-node Ray cluster: what `make serve` runs.

Plain `serve run` starts a local cluster with Ray's full dashboard: a head process plus about
nine module subprocesses, ~1.1 GiB resident on an idle dev machine (more than any model
replica here). A config file cannot turn it off, and the app builder runs too late (inside a
Ray task) to do it. So this starts the cluster first (no dashboard, no idle workers prestarted
for tasks nobody runs, two malloc arenas per process), then hands over to the real `serve run`
command, which finds Ray initialised and uses it. Everything `serve run` does with a config file
(HTTP options, per-app runtime env, logging, blocking until SIGINT/SIGTERM, shutting Serve and
the cluster down) stays the same.

    python -m serve_app.local_run configs/dev.yaml [--num-cpus N] [--dashboard] [serve run options]

For a cluster you manage yourself (`ray start`, `ray up`, KubeRay), use `serve run` or
`serve deploy` directly; this is for one machine.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

# Ray settings for a dev box with one driver and a handful of long-lived actors.
LEAN_SYSTEM_CONFIG = {
    # Ray starts one idle worker per CPU for tasks as soon as a driver connects; Serve runs
    # actors (each in a worker of its own), so those sit idle holding ~80 MB each.
    "prestart_worker_first_driver": False,
    # Idle workers above this count are stopped after ~1 s: keeps none around once the app
    # builder task has run.
    "num_workers_soft_limit": 0,
}


# Inherited by every Ray process started here. glibc gives each thread that allocates its own
# heap arena (up to 8 per core); Ray workers run many threads, so freed memory sits in several
# arenas. Two arenas cut the used dev stack by ~50 MB at no measurable cost on these replicas.
LEAN_ENV = {"MALLOC_ARENA_MAX": "2"}


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(prog="python -m serve_app.local_run", description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="Serve config file, e.g. configs/dev.yaml")
    p.add_argument("--num-cpus", type=int, default=None,
                   help="logical CPUs the cluster schedules by (default: this machine's cores)")
    p.add_argument("--dashboard", action="store_true",
                   help="start Ray's dashboard too (state API, job API, web UI; ~1 GiB more)")
    p.add_argument("--dashboard-port", type=int, default=8265)
    return p.parse_known_args(argv)


def _stop_gracefully(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args, serve_run_args = parse(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    for key, value in LEAN_ENV.items():
        os.environ.setdefault(key, value)

    import ray
    from ray.serve._private.constants import SERVE_NAMESPACE
    from ray.serve.scripts import cli

    ray.init(
        address="local",  # always a fresh cluster of our own, never one `ray start` left running
        namespace=SERVE_NAMESPACE,
        num_cpus=args.num_cpus,
        include_dashboard=args.dashboard,
        dashboard_host="127.0.0.1",
        dashboard_port=args.dashboard_port,
        _system_config=LEAN_SYSTEM_CONFIG,
    )
    # `serve run` stops gracefully on KeyboardInterrupt only (serve.shutdown(): replicas finish
    # their requests, the job runner hands running songs back to the queue). Route SIGTERM
    # (docker stop, systemd, kill) and SIGINT there too; a shell that starts us in the background
    # sets SIGINT to "ignore", which would leave Ctrl-C to a parent dead.
    signal.signal(signal.SIGTERM, _stop_gracefully)
    signal.signal(signal.SIGINT, _stop_gracefully)
    # `serve run` sees Ray initialised and deploys onto this cluster; it blocks until stopped.
    return cli.main(["run", *serve_run_args, args.config], prog_name="serve", standalone_mode=True) or 0


if __name__ == "__main__":
    sys.exit(main())
