"""configs/prod.yaml's topology on a local Ray with fake GPUs: placement by GPU fraction, a song,
and the music deployment scaling up to its max under a burst and back down afterwards.

The kits stand in for the production model ids and run on CPU; everything else (GPU shares,
autoscaling policy shape, ingress replicas) is taken from the prod config.
"""

from __future__ import annotations

import concurrent.futures as cf
import time

import httpx
import pytest
import yaml

from serve_app.localdev.cluster import MODELS, REPO

pytestmark = pytest.mark.serve

APP = "songsmith-gpu"
KITS = {"llm": "qwen2-tiny-kit", "music": "acestep-v15-turbo-kit", "cover": "sdxl-turbo-kit"}
MUSIC_MAX = 3  # 2 fake GPUs: LLM 0.25 + cover 0.15 + 3 x music 0.35 = 1.45


def prod_args_on_kits(storage_dir: str) -> dict:
    args = yaml.safe_load((REPO / "configs/prod.yaml").read_text())["applications"][0]["args"]
    for name, kit in KITS.items():
        args[name]["engine"].update(model=str(MODELS / kit), dtype="auto", device="cpu", num_threads=1,
                                    local_files_only=False)
        args[name]["deployment"]["num_cpus"] = 0.5
    args["cover"]["engine"]["vae"] = None  # the kit brings its own VAE (prod swaps in the fp16-fix one by id)
    # The transformers engine: placement and scaling are the point here, and it deploys in half vLLM's time.
    args["llm"]["engine"].update(max_new_tokens_lyrics=32, max_new_tokens_tags=16, max_new_tokens_meta=16,
                                 engine="transformers")
    # The prod policy with test-sized delays, so a burst scales up and down within a minute.
    args["music"]["deployment"]["autoscaling_config"].update(
        max_replicas=MUSIC_MAX, upscale_delay_s=1, downscale_delay_s=6, metrics_interval_s=0.5,
        look_back_period_s=2,
    )
    args["ingress"]["deployment"]["num_cpus"] = 0.25
    args["storage"] = {"backend": "local", "local_dir": storage_dir}
    return args


def music_replicas() -> dict[str, int]:
    from ray import serve

    dep = serve.status().applications[APP].deployments["Music"]
    return {str(k).split(".")[-1]: v for k, v in dep.replica_states.items()}


@pytest.fixture(scope="module")
def gpu_app(serve_cluster, api_token, tmp_path_factory):
    base = serve_cluster.deploy(prod_args_on_kits(str(tmp_path_factory.mktemp("gpu-storage"))), name=APP,
                                route_prefix="/gpu", token=api_token, timeout_s=240)
    try:
        yield base
    finally:
        serve_cluster.delete(APP)


def test_every_deployment_is_placed_with_its_gpu_fraction(gpu_app, serve_cluster):
    expected = {"LLM": 0.25, "Music": 0.35, "Cover": 0.15, "Ingress": 0.0}
    seen = {}
    for actor in serve_cluster.actors(f"SERVE_REPLICA::{APP}#"):
        deployment = actor.name.split("#")[1]
        seen.setdefault(deployment, set()).add(actor.required_resources.get("GPU", 0.0))
    print("GPU share per deployment:", seen)
    assert {d: s for d, s in seen.items()} == {d: {g} for d, g in expected.items()}


def test_serves_a_song_and_music_scales_with_load(gpu_app, api_token):
    headers = {"Authorization": f"Bearer {api_token}"}
    r = httpx.post(gpu_app + "/generate-with-lyrics", headers=headers, timeout=300,
                   json={"prompt": "pop", "lyrics": "[verse]\nhello", "audio_duration": 10})
    assert r.status_code == 200, r.text
    assert music_replicas().get("RUNNING") == 1

    burst = 12
    body = {"prompt": "rock", "lyrics": "[verse]\nloud", "audio_duration": 30}
    timeline: list[tuple[float, int]] = []
    t0 = time.monotonic()
    with cf.ThreadPoolExecutor(burst) as pool:
        futures = [pool.submit(httpx.post, gpu_app + "/generate-with-lyrics", headers=headers, json=body,
                               timeout=600) for _ in range(burst)]
        while not all(f.done() for f in futures):
            timeline.append((round(time.monotonic() - t0, 1), music_replicas().get("RUNNING", 0)))
            time.sleep(1)
        codes = [f.result().status_code for f in futures]
    peak = max(n for _, n in timeline)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and music_replicas().get("RUNNING", 0) > 1:
        timeline.append((round(time.monotonic() - t0, 1), music_replicas().get("RUNNING", 0)))
        time.sleep(2)
    after = music_replicas().get("RUNNING", 0)
    print("music replicas over time (s, running):", timeline)
    assert codes == [200] * burst
    assert peak == MUSIC_MAX
    assert after == 1, timeline
