"""vLLM inside a real Ray Serve replica: its engine core (a spawned subprocess) starts in the actor,
answers through the deployment handle, and dies with the replica when the app is deleted."""

from __future__ import annotations

import time

import psutil
import pytest

from serve_app.localdev.cluster import MODELS

pytest.importorskip("vllm")
pytestmark = [pytest.mark.serve, pytest.mark.models]


def test_vllm_replica_answers_and_its_engine_core_dies_with_it(serve_cluster):
    from ray import serve

    from deployments.llm import LLMDeployment

    # SmolLM2 (head_dim 64): the tiny Qwen2 kit's head_dim 16 is not in vLLM's CPU attention kernels.
    args = {"model": str(MODELS / "smollm2-135m-instruct"), "engine": "vllm", "dtype": "bfloat16", "kv_cache_gib": 0.25, "max_model_len": 512,
            "num_threads": 1, "max_new_tokens_tags": 16, "max_new_tokens_lyrics": 24, "max_new_tokens_meta": 12}
    t0 = time.monotonic()
    serve.run(LLMDeployment.options(name="LLMvLLM", num_replicas=1, ray_actor_options={"num_cpus": 0.1}).bind(args),
              name="llm-vllm", route_prefix=None)
    started_s = time.monotonic() - t0
    handle = serve.get_app_handle("llm-vllm")
    try:
        assert "(vllm)" in handle.ready.remote().result(timeout_s=60)
        a = handle.lyrics.remote("rain", seed=5).result(timeout_s=60)
        assert a.raw == handle.lyrics.remote("rain", seed=5).result(timeout_s=60).raw
        handle.tags.remote("lofi piano", True).result(timeout_s=60)  # no seed: backward compatible
        [replica] = [r for r in serve_cluster.actors() if "LLMvLLM" in (r.name or "")]
        children = psutil.Process(replica.pid).children(recursive=True)
        assert any("EngineCore" in p.name() or "EngineCore" in " ".join(p.cmdline()) for p in children), children
    finally:
        serve.delete("llm-vllm")
    deadline = time.monotonic() + 60
    alive = children
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.5)
    assert not alive, f"vLLM processes outlived their replica: {alive}"
    print(f"vLLM replica ready in {started_s:.1f} s")
