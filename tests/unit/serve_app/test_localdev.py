"""Local cluster helpers that need no cluster: placement rewrites of an app graph, the process
readers, and a node's kill reaching every process of its session (reparented ones included)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from ray import serve

from serve_app.localdev.cluster import place
from serve_app.localdev.nodes import WorkerNode, session_members
from serve_app.localdev.processes import cpu_rate, rss_bytes


@serve.deployment(name="Leaf", ray_actor_options={"num_cpus": 0.5, "resources": {"kept": 1}})
class Leaf:
    pass


@serve.deployment(name="Root")
class Root:
    def __init__(self, leaf, other, *, n=0):
        pass


def deployment(app):
    return app._bound_deployment


def test_place_adds_resources_and_options_to_named_deployments_only():
    app = Root.bind(Leaf.bind(), Leaf.options(name="Other").bind(), n=3)
    out = place(app, {"Leaf": {"resources": {"node_b": 0.01}, "max_replicas_per_node": 1}})
    root = deployment(out)
    leaf, other = (deployment(a) for a in root.init_args)
    assert leaf.ray_actor_options["resources"] == {"kept": 1, "node_b": 0.01}
    assert leaf.ray_actor_options["num_cpus"] == 0.5
    assert leaf._replica_config.max_replicas_per_node == 1
    assert other.ray_actor_options["resources"] == {"kept": 1}  # not named: unchanged
    assert other._replica_config.max_replicas_per_node is None
    assert root.init_kwargs == {"n": 3}
    assert deployment(Leaf.bind()).ray_actor_options["resources"] == {"kept": 1}  # the original is untouched


def test_place_refuses_unknown_deployment_names():
    with pytest.raises(ValueError, match="Nope"):
        place(Root.bind(Leaf.bind(), Leaf.bind()), {"Nope": {"max_replicas_per_node": 1}})


def test_process_readers():
    assert os.getpid() in session_members(os.getsid(0))
    assert rss_bytes(os.getpid()) > 10 * 2**20
    assert cpu_rate(os.getpid(), 0.05) >= 0
    assert rss_bytes(2**22 + 12345) == 0 and cpu_rate(2**22 + 12345, 0.01) == 0.0


def test_node_kill_reaches_every_process_of_its_session(tmp_path):
    """A stand-in for `ray start --block`: a process whose children outlive it (reparented) are
    found through the session and killed too."""
    node = WorkerNode("127.0.0.1:1", name="fake")
    script = "import subprocess, time\nfor _ in range(3): subprocess.Popen(['sleep', '300'])\ntime.sleep(300)\n"
    node.proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    deadline = time.monotonic() + 10
    while len(node.pids()) < 4:
        assert time.monotonic() < deadline, node.pids()
        time.sleep(0.05)
    pids = node.pids()
    killed = node.kill()
    assert set(pids) <= set(killed)
    assert node.pids() == [] and session_members(node.proc.pid) == []
    node.close()
    assert not node.temp_dir.exists()
