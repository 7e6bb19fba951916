"""End to end: one song through the real app (`serve_app.app:build_app`) on a local Ray Serve."""

from __future__ import annotations

import contextlib
import copy
import os
import secrets
import time
from pathlib import Path
from typing import Any

from bench.gpu.measure import lazy_torch
from bench.gpu.settings import PROD_CONFIG, SONG_LYRICS, SONG_TAGS, Runtime, Workload
from serve_app.localdev.cluster import free_port


def bench_e2e(dirs: dict[str, Any], rt: Runtime, wl: Workload, work: Path) -> dict[str, Any]:
    """One POST /generate-with-lyrics through the real app (build_app + prod.yaml args) on a local Ray Serve."""
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
        if not rt.cuda:  # CPU: float32 and one thread, like configs/dev.yaml
            args[part]["engine"]["dtype"] = "auto"
            args[part]["engine"]["num_threads"] = rt.threads or 1
    storage_dir = work / "e2e-storage"
    args["storage"] = {"backend": "local", "local_dir": str(storage_dir), "url_ttl_s": 3600}
    args.setdefault("jobs", {})["sqlite_path"] = str(work / "e2e-jobs.db")
    if not rt.cuda:
        args["ingress"]["deployment"]["autoscaling_config"]["min_replicas"] = 1
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
        body = {"prompt": SONG_TAGS, "lyrics": SONG_LYRICS, "audio_duration": wl.song_s, "seed": 7,
                "audio_format": "wav"}
        walls = []
        for i in range(2):  # the first song also pays the app's first-request costs; the second is steady
            t1 = time.perf_counter()
            resp = httpx.post(base + "/generate-with-lyrics", json={**body, "seed": 7 + i},
                              headers={"Authorization": f"Bearer {token}"}, timeout=1800)
            walls.append(time.perf_counter() - t1)
            if resp.status_code != 200:
                raise RuntimeError(f"/generate-with-lyrics answered {resp.status_code}: {resp.text[:500]}")
        data = resp.json()
        return {
            "mode": "real app: serve_app.app:build_app with configs/prod.yaml args on a local Ray Serve "
                    "(model dirs = these random-weight folders, storage local)",
            "endpoint": "/generate-with-lyrics", "status": resp.status_code, "deploy_s": deploy_s,
            "first_request_s": walls[0], "request_s": walls[-1], "audio_duration_s": data.get("duration_s"),
            "timings": data.get("timings"), "rtf_end_to_end": walls[-1] / wl.song_s,
        }
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()  # our own local cluster only; never `ray stop`
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
