"""End to end: the real app (`serve_app.app:build_app`, configs/prod.yaml's args) on a local Ray Serve:
the three models as three replica processes sharing the GPU. Times one song alone, then
`e2e_concurrent` (3) songs submitted at once, and samples each replica process's memory meanwhile:
GPU memory per process from `nvidia-smi --query-compute-apps=pid,used_memory` (a vLLM engine core
counts for the LLM replica that spawned it), RSS per process from /proc.

Songs are `POST /generate-from-description` (tags, lyrics and meta from the LLM, then music and
cover), after one warm-up song that pays the app's first-request costs. Autoscaling is pinned to one
replica per model, so the concurrent songs share the same three processes (prod.yaml would add
replicas after its upscale delays)."""

from __future__ import annotations

import contextlib
import copy
import os
import secrets
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.gpu.measure import lazy_torch
from bench.gpu.settings import PROD_CONFIG, SONG_DESCRIPTION, Runtime, Workload
from serve_app.localdev.cluster import free_port


def bench_e2e(dirs: dict[str, Any], rt: Runtime, wl: Workload, work: Path) -> dict[str, Any]:
    """Songs through the real app (build_app + prod.yaml args) on a local Ray Serve: one alone, then several at once."""
    import httpx
    import ray
    import yaml
    from ray import serve

    from serve_app.app import build_app

    doc = yaml.safe_load(PROD_CONFIG.read_text())
    app = copy.deepcopy(doc["applications"][0])
    args = app["args"]
    for part in ("llm", "music", "cover"):
        args[part]["engine"]["model"] = dirs[part]["path"]
        auto = args[part]["deployment"].get("autoscaling_config")
        if auto:  # one replica (process) per model: the three-processes-on-one-GPU layout
            auto["min_replicas"] = auto["max_replicas"] = 1
        if not rt.cuda:  # CPU: float32 and one thread, like configs/dev.yaml; the fake GPU counters
            # Ray hands out are no GPU, so say "cpu" (with "auto" an engine given a GPU it cannot see refuses to start)
            args[part]["engine"].update(dtype="auto", num_threads=rt.threads or 1, device="cpu")
    if "cover_vae" in dirs:  # prod's fp16-fix VAE: the random-weight stand-in (bench/gpu/cover_vae.py)
        args["cover"]["engine"]["vae"] = dirs["cover_vae"]["path"]
    else:
        args["cover"]["engine"].pop("vae", None)
    storage_dir = work / "e2e-storage"
    args["storage"] = {"backend": "local", "local_dir": str(storage_dir), "url_ttl_s": 3600}
    args.setdefault("jobs", {})["sqlite_path"] = str(work / "e2e-jobs.db")
    if not rt.cuda:
        args["ingress"]["deployment"]["autoscaling_config"]["min_replicas"] = 1
    for service in ("llm", "music", "cover", "ingress"):
        # prod.yaml pins its GPU deployments to an accelerator type (H100); the benchmark measures the
        # GPU it runs on (an H200, or a CPU's fake GPU counters, which have no type at all).
        (args.get(service, {}).get("deployment") or {}).pop("accelerator_type", None)
    token = secrets.token_urlsafe(24)
    env = {
        args.get("auth", {}).get("token_env", "API_BEARER_TOKEN"): token,
        "STORAGE_SIGNING_SECRET": secrets.token_urlsafe(32),
        args["jobs"].get("webhook_secret_env", "WEBHOOK_SIGNING_SECRET"): secrets.token_urlsafe(32),
    }
    env.update({k: str(v) for k, v in (app.get("runtime_env", {}).get("env_vars") or {}).items()})
    env.pop(args["jobs"].get("database_url_env", "JOBS_DATABASE_URL"), None)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # build_app reads them here; replicas inherit the cluster's environment
    torch = lazy_torch()
    num_gpus = torch.cuda.device_count() if rt.cuda else 1  # on CPU: a logical GPU (placement counter only)
    port = free_port()
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=max(16, os.cpu_count() or 1), num_gpus=num_gpus, include_dashboard=False,
             log_to_driver=False, runtime_env={"env_vars": env})
    sampler = ProcessSampler(rt.cuda)
    sampler.start()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(args), name="songsmith-bench", route_prefix="/", blocking=False)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 1800
        while True:
            try:
                if httpx.get(base + "/health", timeout=10).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the app did not become healthy in 30 min")
            time.sleep(1.0)
        deploy_s = time.perf_counter() - t0
        headers = {"Authorization": f"Bearer {token}"}

        def song(seed: int) -> tuple[float, dict[str, Any]]:
            body = {"full_described_song": SONG_DESCRIPTION, "audio_duration": wl.song_s, "seed": seed,
                    "audio_format": "wav"}
            t1 = time.perf_counter()
            resp = httpx.post(base + ENDPOINT, json=body, headers=headers, timeout=1800)
            wall = time.perf_counter() - t1
            if resp.status_code != 200:
                raise RuntimeError(f"{ENDPOINT} answered {resp.status_code}: {resp.text[:500]}")
            return wall, resp.json()

        first_s, _ = song(7)  # pays the app's first-request costs
        sampler.mark("songs")
        alone_s, data = song(8)
        n = wl.e2e_concurrent
        t1 = time.perf_counter()
        with ThreadPoolExecutor(n) as pool:
            together = list(pool.map(song, range(100, 100 + n)))
        together_wall = time.perf_counter() - t1
        each = [w for w, _ in together]
        return {
            "mode": "real app: serve_app.app:build_app with configs/prod.yaml args on a local Ray Serve "
                    "(model dirs = these random-weight folders, storage local, one replica per model)",
            "endpoint": ENDPOINT, "status": 200, "deploy_s": deploy_s,
            "first_request_s": first_s, "request_s": alone_s, "audio_duration_s": data.get("duration_s"),
            "timings": data.get("timings"), "rtf_end_to_end": alone_s / wl.song_s,
            "alone": {"songs": 1, "wall_s": alone_s, "timings": data.get("timings")},
            "concurrent": {"songs": n, "wall_s": together_wall, "each_s": each, "max_s": max(each),
                           "mean_s": sum(each) / n, "slowdown_vs_alone": together_wall / alone_s,
                           "timings": [d.get("timings") for _, d in together]},
            "processes": sampler.summary(),
        }
    finally:
        sampler.stop()
        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()  # our own local cluster only; never `ray stop`
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


ENDPOINT = "/generate-from-description"


def nvidia_smi_apps() -> dict[int, int] | None:
    """{pid: used GPU bytes} of every compute process, or None without nvidia-smi."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    apps = {}
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            apps[int(parts[0])] = int(parts[1]) * 2**20  # MiB
    return apps


class ProcessSampler:
    """Samples the replicas' processes (Ray titles them `ray::ServeReplica:<app>:<Deployment>`), each
    with its children (vLLM's engine core), every `interval_s`: peak RSS and peak nvidia-smi GPU
    memory per deployment, over the whole run (deploy included) and from `mark("songs")` on."""

    def __init__(self, cuda: bool, interval_s: float = 0.5):
        self.cuda, self.interval_s = cuda, interval_s
        self.rows: dict[str, dict[str, Any]] = {}
        self.smi = nvidia_smi_apps() if cuda else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="e2e-process-sampler", daemon=True)
        self._phase = "deploy"
        self.device_used_peak = None

    def start(self) -> None:
        self._thread.start()

    def mark(self, phase: str) -> None:
        self._phase = phase

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _replicas(self) -> dict[str, list[int]]:
        from bench.common import process_tree, ray_pids, short_name

        out: dict[str, list[int]] = {}
        for pid in ray_pids():
            try:
                argv = [a.decode(errors="replace") for a in open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")]
            except OSError:
                continue
            name = short_name(argv)
            if name.startswith("ray::ServeReplica:"):
                dep = name.split(":")[-1].split(".")[0]
                out.setdefault(dep, []).extend(process_tree(pid))
        return out

    def _sample(self) -> None:
        from bench.common import stack_rss

        smi = nvidia_smi_apps() if self.smi is not None else None
        if self.cuda:
            with contextlib.suppress(Exception):
                free, total = lazy_torch().cuda.mem_get_info()
                self.device_used_peak = max(self.device_used_peak or 0, int(total - free))
        for dep, pids in self._replicas().items():
            r = self.rows.setdefault(dep, {"pids": set(), "rss_peak_bytes": 0, "songs_rss_peak_bytes": 0,
                                           "gpu_used_peak_bytes": None, "songs_gpu_used_peak_bytes": None})
            r["pids"].update(pids)
            rss = stack_rss(pids)
            r["rss_peak_bytes"] = max(r["rss_peak_bytes"], rss)
            if self._phase == "songs":
                r["songs_rss_peak_bytes"] = max(r["songs_rss_peak_bytes"], rss)
            if smi is not None:
                used = sum(smi.get(p, 0) for p in pids)
                r["gpu_used_peak_bytes"] = max(r["gpu_used_peak_bytes"] or 0, used)
                if self._phase == "songs":
                    r["songs_gpu_used_peak_bytes"] = max(r["songs_gpu_used_peak_bytes"] or 0, used)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # a process exiting mid-sample
                self._sample()
            self._stop.wait(self.interval_s)

    def summary(self) -> dict[str, Any]:
        with contextlib.suppress(Exception):
            self._sample()
        if not self.cuda:
            gpu = {"skipped": "no CUDA: GPU memory per process needs nvidia-smi on a GPU node"}
        elif self.smi is None:
            gpu = {"skipped": "nvidia-smi not found (torch in the replicas would need a deployment method "
                              "to report max_memory_allocated; deployments/ has none)"}
        else:
            gpu = {"source": "nvidia-smi --query-compute-apps=pid,used_memory (includes each CUDA context)"}
        return {"per_deployment": {d: {**r, "pids": sorted(r["pids"])} for d, r in sorted(self.rows.items())},
                "gpu_memory": gpu, "device_used_peak_bytes": self.device_used_peak,
                "rss_source": "/proc/<pid>/statm of the replica and its children, sampled every "
                              f"{self.interval_s:g} s"}
