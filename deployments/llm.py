"""Lyrics/tags writer: the chat LLM engines (usable without Ray) and their Serve deployment.

Two engines behind deployments/protocol.py: vLLM's async engine (deployments/llm_vllm.py, the
default: continuous batching, prefix caching, every request answered on its own) and transformers
`generate` (`LLMEngine` below), kept as the fallback for models vLLM cannot load (GGUF, an
unsupported architecture, or no vllm installed). `LLMArgs.engine` picks; `engine_class` decides.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time

from ray import serve

from deployments import lyrics_text as lt
from deployments.config import LLMArgs
from deployments.protocol import (  # noqa: F401  (the request/result types are imported from here too)
    Answer,
    Completion,
    LLMProtocol,
    TorchEngine,
    Written,
    product_seed,
)
from deployments.serving import Batcher, Worker

log = logging.getLogger(__name__)


class LLMEngine(TorchEngine):
    """Chat completion with transformers: unseeded chats are decoded greedily, left-padded into one
    `generate` call; seeded chats are sampled (temperature/top_p) one at a time under a lock, since
    `generate` takes no per-request generator: the seed goes into torch's global RNG, so two
    seeded calls must not interleave. Batch size 1 for seeded rows is what CPUs run anyway."""

    args: LLMArgs
    _sampling_lock = threading.Lock()

    def load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from deployments.runtime import from_pretrained

        args = self.args
        self.tokenizer = from_pretrained(AutoTokenizer.from_pretrained, args, padding_side="left")
        model = from_pretrained(AutoModelForCausalLM.from_pretrained, args, dtype=self.runtime.dtype)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"
        self.model = model.to(self.runtime.device).eval()
        if args.torch_compile and self.runtime.device.type == "cuda":
            self.model.forward = torch.compile(self.model.forward, dynamic=True)

    def warm_up(self) -> None:
        self.complete_batch([Completion([{"role": "user", "content": "Hi"}], 2)])

    def complete_batch(self, items: list[Completion]) -> list[Answer]:
        """One answer per chat, in order: the greedy ones in one generate() call, each seeded one in
        its own sampled call."""
        sampled = self.args.temperature > 0
        greedy = [i for i, it in enumerate(items) if it.seed is None or not sampled]
        out: list[Answer | None] = [None] * len(items)
        if greedy:
            for i, ans in zip(greedy, self._generate([items[i] for i in greedy])):
                out[i] = ans
        for i, it in enumerate(items):
            if out[i] is None:
                out[i] = self._generate([it], seed=it.seed)[0]
        return out  # type: ignore[return-value]

    def _generate(self, items: list[Completion], seed: int | None = None) -> list[Answer]:
        """Answer every chat in ONE generate() call; each row stops at EOS or its own token budget.

        One call (not one per budget) keeps a song's tags and lyrics, asked together, finishing
        together: the music waits for both, so the batch costs it nothing extra. With `seed` (one
        item), it samples from that seed under the class lock.
        """
        import contextlib

        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        prompts = [
            self.tokenizer.apply_chat_template(it.chat, add_generation_prompt=True, tokenize=False) for it in items
        ]
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(self.runtime.device)
        prompt_len = enc["input_ids"].shape[1]
        budgets = torch.tensor([it.max_new_tokens for it in items], device=self.runtime.device)

        class RowBudget(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return (input_ids.shape[1] - prompt_len) >= budgets

        sampling = {"do_sample": False}
        if seed is not None:
            sampling = {"do_sample": True, "temperature": self.args.temperature, "top_p": self.args.top_p}
        with self._sampling_lock if seed is not None else contextlib.nullcontext(), torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            ids = self.model.generate(
                **enc,
                max_new_tokens=int(budgets.max()),
                **sampling,
                repetition_penalty=self.args.repetition_penalty,
                pad_token_id=self.tokenizer.pad_token_id,
                stopping_criteria=StoppingCriteriaList([RowBudget()]),
            )
        new = ids[:, prompt_len:]
        stops = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id, *self._extra_stop_ids()}
        out = []
        for row, it in zip(new, items):
            row = row[: it.max_new_tokens].tolist()
            ended = any(t in stops for t in row)
            out.append(Answer(self.tokenizer.decode(row, skip_special_tokens=True), truncated=not ended))
        return out

    def _extra_stop_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        return set(eos) if isinstance(eos, list) else ({eos} if eos is not None else set())

    # -- the three products, for single use without Ray (tests, the seed-style baseline) --

    def write_tags(self, description: str, instrumental: bool, seed: int | None = None) -> Written:
        return finish_tags(self.complete_batch([tags_completion(self.args, description, instrumental, seed)])[0],
                           description, instrumental, self.args.model_name)

    def write_lyrics(self, subject: str, seed: int | None = None) -> Written:
        raw = self.complete_batch([lyrics_completion(self.args, subject, seed)])[0]
        return finish_lyrics(raw, subject, self.args.model_name)

    def write_meta(self, description: str, tags: list[str], lyrics: str = "", seed: int | None = None) -> Written:
        raw = self.complete_batch([meta_completion(self.args, description, tags, seed)])[0]
        return finish_meta(raw, description, tags, lyrics, self.args.model_name)


# The three products' requests. `seed` is the SONG's seed (None = greedy); each product samples
# from its own seed derived from it (protocol.product_seed).


def tags_completion(args: LLMArgs, description: str, instrumental: bool, seed: int | None = None) -> Completion:
    return Completion(lt.tags_chat(description, instrumental), args.max_new_tokens_tags, product_seed(seed, "tags"))


def lyrics_completion(args: LLMArgs, subject: str, seed: int | None = None) -> Completion:
    return Completion(lt.lyrics_chat(subject), args.max_new_tokens_lyrics, product_seed(seed, "lyrics"))


def meta_completion(args: LLMArgs, description: str, tags: list[str], seed: int | None = None) -> Completion:
    return Completion(lt.meta_chat(description, tags), args.max_new_tokens_meta, product_seed(seed, "meta"))


def finish_tags(ans: Answer, description: str, instrumental: bool, model: str) -> Written:
    tags = lt.parse_tags(ans.text, description, instrumental, truncated=ans.truncated)
    return Written("tags", tags=tags, raw=ans.text, model=model, repaired=", ".join(tags) != ans.text.strip().lower())


def finish_lyrics(ans: Answer, subject: str, model: str) -> Written:
    lyrics = lt.parse_lyrics(ans.text, subject, truncated=ans.truncated)
    return Written("lyrics", lyrics=lyrics, raw=ans.text, model=model, repaired=lyrics != ans.text.strip())


def finish_meta(ans: Answer, description: str, tags: list[str], lyrics: str, model: str) -> Written:
    title, cats = lt.parse_meta(ans.text, description, tags, lyrics)
    return Written("meta", title=title, categories=cats, raw=ans.text, model=model)


def engine_class(args: LLMArgs) -> type:
    """The engine `args.engine` asks for, or transformers when vLLM cannot load this model here."""
    if args.engine == "vllm":
        from deployments.llm_vllm import vllm_unsupported_reason

        reason = vllm_unsupported_reason(args)
        if reason is None:
            from deployments.llm_vllm import VLLMEngine

            return VLLMEngine
        log.warning("LLM %s: vLLM cannot serve it (%s); using the transformers engine", args.model, reason)
    return LLMEngine


@serve.deployment(name="LLM", max_ongoing_requests=32)
class LLMDeployment:
    """An async engine (vLLM) gets every prompt as its own request and schedules them itself. A
    blocking engine (transformers): concurrent prompts share one generate() call (a Batcher) on
    GPUs; on CPUs, where every batched row costs compute, they run unbatched on
    `parallel_requests` threads instead. `engine_cls` swaps the engine (tests: a fake); None =
    `engine_class(args)`."""

    def __init__(self, args: LLMArgs | dict, engine_cls: type | None = None):
        self.args = LLMArgs.model_validate(args)
        self.engine = (engine_cls or engine_class(self.args))(self.args)
        self._async = inspect.iscoroutinefunction(getattr(self.engine, "complete", None))
        self._unbatched = self.args.max_batch_size == 1
        self._worker = Worker("llm", threads=self.args.parallel_requests if self._unbatched else 1)
        self._batcher = Batcher(self._complete, self.args.max_batch_size, self.args.batch_wait_timeout_s)

    async def _complete(self, items: list[Completion]) -> list[Answer]:
        return await self._worker.call(self.engine.complete_batch, items)

    async def ready(self) -> str:
        return self.engine.ready()

    def shutdown(self) -> None:
        """Stop the engine's subprocesses (vLLM's engine core) now; idempotent."""
        stop = getattr(getattr(self, "engine", None), "shutdown", None)
        if stop is not None:
            stop()

    def __del__(self) -> None:  # Serve calls it on a graceful replica shutdown
        self.shutdown()

    async def _timed(self, completion: Completion) -> tuple[Answer, float, float]:
        started = time.time()
        with self._worker.request():
            if self._async:
                raw = await self.engine.complete(completion)
            elif self._unbatched:
                [raw] = await self._worker.call(self.engine.complete_batch, [completion])
            else:
                raw = await self._batcher.submit(completion)
        return raw, started, time.time()

    # `seed`: the song's seed (None = greedy, as before seeds); the same seed gives the same words.

    async def tags(self, description: str, instrumental: bool = False, seed: int | None = None) -> Written:
        raw, t0, t1 = await self._timed(tags_completion(self.args, description, instrumental, seed))
        return _stamp(finish_tags(raw, description, instrumental, self.args.model_name), t0, t1)

    async def lyrics(self, subject: str, seed: int | None = None) -> Written:
        raw, t0, t1 = await self._timed(lyrics_completion(self.args, subject, seed))
        return _stamp(finish_lyrics(raw, subject, self.args.model_name), t0, t1)

    async def meta(self, description: str, tags: list[str], lyrics: str = "", seed: int | None = None) -> Written:
        raw, t0, t1 = await self._timed(meta_completion(self.args, description, tags, seed))
        return _stamp(finish_meta(raw, description, tags, lyrics, self.args.model_name), t0, t1)


def _stamp(w: Written, started: float, finished: float) -> Written:
    w.started_at, w.finished_at = started, finished
    return w
