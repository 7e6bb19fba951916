"""A real local Ray cluster and Serve HTTP proxy, with the app deployed from a config.

For tests, benchmarks and `make serve`-style local runs, never the production path (see
`serve_app.localdev`). The tests start one cluster per session (Ray takes ~5 s to start); apps
are deployed onto it by name.
`ray.init(address="local")` always starts a fresh cluster of our own, so a developer's running
`make serve` is never touched, and nothing here calls `ray stop`.
"""

from __future__ import annotations

import copy
import os
import random
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]  # the checkout (an editable install: `make setup`)
MODELS = REPO / "models"


def free_port() -> int:
    """A free port below Linux's ephemeral range (32768+).

    Port 0 hands out an ephemeral port, the same pool the OS draws source ports of outgoing
    connections from: with Ray opening many gRPC connections, a port picked that way can be
    taken again before the server that was meant to get it binds (seen: Ray's metrics agent
    failing with EADDRINUSE, so the whole cluster failed to start).
    """
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_args(config: str = "configs/dev.yaml", app: int = 0) -> dict[str, Any]:
    """The `args:` of one application in a Serve config file."""
    doc = yaml.safe_load((REPO / config).read_text())
    return copy.deepcopy(doc["applications"][app]["args"])


def merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in override.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclass
class ServeCluster:
    port: int
    dashboard_url: str
    metrics_url: str  # Prometheus text format, as a scraper sees it

    def actors(self, prefix: str = "SERVE_REPLICA::") -> list:
        """Alive actors whose name starts with `prefix`, through Ray's state API (pids, resources)."""
        from ray.util.state import list_actors

        alive = list_actors(address=self.dashboard_url, detail=True, limit=10_000, filters=[("state", "=", "ALIVE")])
        return [a for a in alive if (a.name or "").startswith(prefix)]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def deploy(self, args: dict[str, Any], *, name: str, route_prefix: str, token: str, timeout_s: float = 180,
               placement: dict[str, dict[str, Any]] | None = None):
        """Build the app exactly as `serve run` would (through build_app) and wait for /health.

        `placement` adds options the app args do not carry to named deployments (see `place`):
        custom resources pinning replicas to a node, `max_replicas_per_node`.
        """
        from ray import serve

        from serve_app.app import build_app

        os.environ["API_BEARER_TOKEN"] = token
        os.environ.setdefault("STORAGE_SIGNING_SECRET", secrets.token_urlsafe(32))
        app = build_app(args)
        if placement:
            app = place(app, placement)
        serve.run(app, name=name, route_prefix=route_prefix, blocking=False)
        url = self.base_url + route_prefix.rstrip("/") + "/health"
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            try:
                last = httpx.get(url, timeout=10)
                if last.status_code == 200:
                    return self.base_url + route_prefix.rstrip("/")
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(0.5)
        raise RuntimeError(f"app {name} not healthy after {timeout_s:.0f}s: {last!r}")

    @property
    def gcs_address(self) -> str:
        """The head's GCS address (what `ray start --address` takes to join another node)."""
        import ray

        return ray.get_runtime_context().gcs_address

    @property
    def head_node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def add_node(self, name: str = "node-b", **kwargs):
        """Another Ray node on this machine, joined to this cluster (`serve_app.localdev.nodes`)."""
        from serve_app.localdev.nodes import WorkerNode

        return WorkerNode(self.gcs_address, name=name, **kwargs).start()

    def delete(self, name: str) -> None:
        from ray import serve

        serve.delete(name)


def place(app, placement: dict[str, dict[str, Any]]):
    """`app` (an Application graph from build_app) with extra options for the deployments named in
    `placement`: `{"Music": {"resources": {"node_b": 0.01}, "max_replicas_per_node": 1}}`.

    `resources` is merged into the deployment's `ray_actor_options` (custom resources, e.g. ones only
    one node has); any other key goes to `Deployment.options` as is. Deployments not named keep
    what the app args gave them; the bound arguments (handles to the other deployments) are
    rebuilt the same way, so nested deployments can be placed too.
    """
    from ray.serve import Application

    unknown = set(placement)

    def rebuild(value):
        if not isinstance(value, Application):
            return value
        dep = value._bound_deployment  # what build_app bound; there is no public getter
        args = tuple(rebuild(a) for a in dep.init_args)
        kwargs = {k: rebuild(v) for k, v in dep.init_kwargs.items()}
        extra = dict(placement.get(dep.name, {}))
        unknown.discard(dep.name)
        if "resources" in extra:
            actor = dict(dep.ray_actor_options or {})
            actor["resources"] = {**actor.get("resources", {}), **extra.pop("resources")}
            extra["ray_actor_options"] = actor
        return (dep.options(**extra) if extra else dep).bind(*args, **kwargs)

    out = rebuild(app)
    if unknown:
        raise ValueError(f"no deployments named {sorted(unknown)} in the app")
    return out


ACCELERATOR_RESOURCE_PREFIX = "accelerator_type:"  # how Ray names a node's accelerator type as a resource


def start_cluster(num_cpus: int = 16, num_gpus: int = 2, *, lean: bool = False) -> ServeCluster:
    """Logical CPUs and GPUs are scheduling counters: fake GPUs let placement tests run on a CPU machine.

    `lean` starts the cluster the way `make serve` does (serve_app.local_run: no dashboard, no
    prestarted workers), for benchmarks that measure the dev stack's memory; the state API
    (`ServeCluster.actors`) needs the dashboard, so tests keep the default.
    """
    import ray
    from ray import serve

    from serve_app.local_run import LEAN_ENV, LEAN_SYSTEM_CONFIG

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Replicas inherit the environment the cluster starts with: secrets they read go in first.
    os.environ.setdefault("STORAGE_SIGNING_SECRET", secrets.token_urlsafe(32))
    os.environ.setdefault("WEBHOOK_SIGNING_SECRET", secrets.token_urlsafe(32))
    if lean:
        for key, value in LEAN_ENV.items():
            os.environ.setdefault(key, value)  # inherited by the Ray processes started below
    for attempt in range(3):
        port, metrics_port = free_port(), free_port()
        try:
            ctx = ray.init(
                address="local",
                num_cpus=num_cpus,
                num_gpus=num_gpus,
                # The fake GPUs present themselves as the H100s configs/prod.yaml pins its GPU
                # deployments to (accelerator_type), so its placement is tested as written.
                resources={f"{ACCELERATOR_RESOURCE_PREFIX}H100": num_gpus} if num_gpus else None,
                include_dashboard=not lean,  # Ray's state API (actor pids and resources) lives there
                dashboard_host="127.0.0.1",
                dashboard_port=free_port(),
                _metrics_export_port=metrics_port,
                _system_config={"metrics_report_interval_ms": 2000, **(LEAN_SYSTEM_CONFIG if lean else {})},
                log_to_driver=False,
                runtime_env={"env_vars": {"RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1"}},
            )
            break
        except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception when a node fails to start
            ray.shutdown()
            if attempt == 2 or "timed out during startup" not in str(exc):
                raise
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    return ServeCluster(port=port, dashboard_url="http://" + (ctx.dashboard_url or ""),
                        metrics_url=f"http://127.0.0.1:{metrics_port}/metrics")


def stop_cluster() -> None:
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()
