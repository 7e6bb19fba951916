"""`make serve`'s launcher (serve_app.local_run) as a user runs it: a subprocess on its own lean Ray
cluster, serving the dev config over HTTP.

It must start without Ray's dashboard processes, stop gracefully on SIGTERM (docker stop,
systemd) and on Ctrl-C even when a shell started it in the background (SIGINT ignored), leave no
Ray process behind, and lose no accepted song: a song rendering at shutdown goes back to the
queue and the next start finishes it.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from serve_app.jobs import JobStore
from serve_app.localdev.cluster import REPO, free_port
from serve_app.localdev.processes import process_tree
from tests.conftest import fast_app_args

pytestmark = pytest.mark.serve


def _tree(root: int) -> set[int]:
    return set(process_tree(root))


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pids: set[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.append(f"{pid} {_title(pid)[:80]}")
    return out


class LocalRun:
    """One `python -m serve_app.local_run CONFIG` process, as `make serve` starts it."""

    def __init__(self, config: Path, env: dict, log: Path, *, ignore_sigint: bool = False):
        env = {**os.environ, **env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serve_app.local_run", "--num-cpus", "4", str(config)],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log.open("a"), start_new_session=True,
            # What `make serve &` in a script does to Ctrl-C: the child starts with SIGINT ignored.
            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None,
        )

    def wait_healthy(self, base_url: str, timeout_s: float = 240, token: str | None = None) -> dict:
        """/health's answer once ready (per-deployment details only with a token)."""
        deadline = time.monotonic() + timeout_s
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                r = httpx.get(base_url + "/health", timeout=5, headers=headers)
                if r.status_code == 200:
                    return r.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError("no healthy /health in time:\n" + self.log.read_text()[-3000:])

    def stop(self, sig: int, timeout_s: float = 90) -> tuple[int, float, list[str]]:
        """Send `sig`; returns (exit code, seconds to exit, processes of its tree still alive)."""
        tree = _tree(self.proc.pid)
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise AssertionError(f"signal {sig} did not stop local_run in {timeout_s} s") from None
        took = time.monotonic() - t0
        deadline = time.monotonic() + 15  # Ray's fate-sharing children die right after it
        while (left := _alive(tree - {self.proc.pid})) and time.monotonic() < deadline:
            time.sleep(0.2)
        return rc, took, left

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def dev_config(tmp_path, kits):
    storage = tmp_path / "storage"
    doc = yaml.safe_load((REPO / "configs/dev.yaml").read_text())
    port = free_port()
    doc["http_options"]["port"] = port
    # The LLM on the transformers engine: this is about the launcher's lifecycle, and it starts the
    # stack twice (vLLM's engine core is shut down with its replica: test_llm_vllm_serve.py).
    args = fast_app_args(str(storage))
    args["jobs"].update(drain_timeout_s=0.5, lease_s=5.0)
    doc["applications"][0]["args"] = args
    config = tmp_path / "dev.yaml"
    config.write_text(yaml.safe_dump(doc))
    return {"config": config, "base_url": f"http://127.0.0.1:{port}", "jobs_db": f"sqlite:///{storage}/jobs.db",
            "storage": storage, "log": tmp_path / "local_run.log"}


@pytest.fixture
def secrets_env(api_token):
    """What an operator exports before `make serve`; kept across restarts (links stay valid)."""
    return {"API_BEARER_TOKEN": api_token, "STORAGE_SIGNING_SECRET": secrets.token_urlsafe(32),
            "WEBHOOK_SIGNING_SECRET": secrets.token_urlsafe(32)}


def test_lean_stack_serves_then_stops_without_losing_a_song(dev_config, secrets_env, api_token):
    headers = {"Authorization": f"Bearer {api_token}"}
    base = dev_config["base_url"]
    run = LocalRun(dev_config["config"], secrets_env, dev_config["log"])
    try:
        health = run.wait_healthy(base, token=api_token)
        assert health["status"] == "ok", health
        assert all(d["ready"] for d in health["deployments"].values()), health

        titles = [_title(p) for p in _tree(run.proc.pid)]
        assert not [t for t in titles if t.startswith("ray-dashboard-")], titles  # no dashboard modules
        assert any(t.startswith("ray::ServeReplica:songsmith:Music") for t in titles), titles

        # A song long enough to be mid-render when the service is stopped (~6 s of rendering on the
        # kit on an idle core; the drain waits 0.5 s), short enough that the restart finishes it soon.
        body = {"prompt": "jazz", "lyrics": "[verse]\nafter hours", "audio_duration": 60.0, "infer_step": 60}
        r = httpx.post(base + "/v1/songs", json=body, headers=headers, timeout=30)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        store = JobStore(dev_config["jobs_db"], migrate=False)
        deadline = time.monotonic() + 90
        while (job := store.get(job_id)).stage != "composing":
            assert time.monotonic() < deadline, job
            time.sleep(0.1)

        rc, took, left = run.stop(signal.SIGTERM)
        assert rc == 0, dev_config["log"].read_text()[-3000:]
        assert left == [], left
        print(f"\nSIGTERM to exit: {took:.1f} s")
        job = store.get(job_id)
        assert job.status == "queued", job  # handed back, not dropped
        assert any(e.type == "status" and e.data.get("released") for e in store.events(job_id))

        # The next start finishes it; Ctrl-C stops it even with SIGINT ignored at start.
        run = LocalRun(dev_config["config"], secrets_env, dev_config["log"], ignore_sigint=True)
        run.wait_healthy(base)
        deadline = time.monotonic() + 300
        while (job := store.get(job_id)).status not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline, job
            time.sleep(0.5)
        assert job.status == "succeeded", job.error
        song = httpx.get(f"{base}/v1/songs/{job_id}", headers=headers, timeout=30).json()["result"]
        stored = dev_config["storage"] / "objects" / song["r2_key"]
        assert httpx.get(song["audio_url"], timeout=30).content == stored.read_bytes()
        # One set of outputs: the interrupted attempt left nothing behind.
        assert sorted(p.name for p in stored.parent.iterdir()) == ["audio.wav", "cover.png", "manifest.json"]

        rc, _, left = run.stop(signal.SIGINT)
        assert rc == 0, dev_config["log"].read_text()[-3000:]
        assert left == [], left
    finally:
        run.kill()
