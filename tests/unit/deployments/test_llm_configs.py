"""The LLM blocks of configs/*.yaml: vLLM's memory settings agree with the deployment's GPU share,
and dev keeps vLLM small on a shared CPU machine."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deployments.config import LLMArgs

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def llm_block(name: str) -> dict:
    app = yaml.safe_load((CONFIGS / name).read_text())["applications"][0]
    return app["args"]["llm"]


@pytest.mark.parametrize("name", ["prod.yaml", "prod-multi-gpu.yaml"])
def test_vllm_gpu_memory_fits_the_deployment_gpu_share(name):
    block = llm_block(name)
    args = LLMArgs.model_validate(block["engine"])
    share = float(block["deployment"]["num_gpus"])
    assert args.engine == "vllm"
    # vLLM's fraction is of the whole GPU: above the Ray share it would take other replicas' memory.
    assert args.gpu_memory_utilization <= share
    if share < 1:  # a shared GPU: an explicit KV size, so start-up profiling can't see others' memory
        assert args.kv_cache_gib is not None
        weights_gib = 14.2  # Qwen2-7B bf16 (the budget at the top of prod.yaml)
        assert weights_gib + args.kv_cache_gib + 1.5 <= args.gpu_memory_utilization * 79.1


def test_dev_runs_vllm_small_on_cpu():
    args = LLMArgs.model_validate(llm_block("dev.yaml")["engine"])
    assert args.engine == "vllm"
    assert args.kv_cache_gib is not None and args.kv_cache_gib <= 1
    assert args.num_threads is not None and args.num_threads <= 2
    assert args.max_model_len <= 4096
