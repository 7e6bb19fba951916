"""Qwen2 tiny kit: random-weight `Qwen2ForCausalLM` (the real Qwen2-7B-Instruct architecture).

For the fastest LLM tests (generate 50 tokens in well under 0.5 s on CPU). Output is gibberish.
head_dim is 32 (128 / 4 heads): the smallest size vLLM's CPU attention serves, so the e2e stack
runs the same engine (vLLM) as dev and production.
The tokenizer is SmolLM2's byte-level BPE (49152 tokens, has `<|im_start|>`, `<|im_end|>`,
`<|endoftext|>`) with Qwen2-7B-Instruct's ChatML chat template and special-token roles
(eos `<|im_end|>`, pad `<|endoftext|>`), and the generation config mirrors Qwen2-7B-Instruct's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._common import Kit, clean_tokenizer_config
from .smollm2 import GGUF_NAME, KIT_NAME as SMOLLM2_KIT_NAME, gguf_path
from .tokenizers_offline import QWEN2_CHAT_TEMPLATE

KIT_NAME = "qwen2-tiny-kit"
SEED = 4321
VERSION = 3

MODEL = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": False,
    "use_sliding_window": False,
}

TOKENS = {"bos": "<|endoftext|>", "eos": "<|im_end|>", "pad": "<|endoftext|>", "unk": None}

# Qwen2-7B-Instruct's generation_config.json (eos ids resolved against this tokenizer).
GENERATION = {"do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05}


def spec() -> dict[str, Any]:
    try:
        src = {"file": GGUF_NAME, "bytes": gguf_path().stat().st_size}
    except Exception as e:  # noqa: BLE001 - spec must be computable
        src = {"file": GGUF_NAME, "missing": str(e)}
    return {
        "version": VERSION,
        "seed": SEED,
        "tokenizer_source": src,
        "chat_template": QWEN2_CHAT_TEMPLATE,
        "tokens": TOKENS,
        "model": MODEL,
        "generation": GENERATION,
    }


def _load_base_tokenizer(out: Path):
    """SmolLM2's tokenizer: from the sibling SmolLM2 kit if built (fast), else from the GGUF."""
    from transformers import AutoTokenizer

    sibling = out.parent / SMOLLM2_KIT_NAME
    if (sibling / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(sibling)
    src = gguf_path()
    return AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)


def make_model_and_tokenizer(out: Path):
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tok = _load_base_tokenizer(out)
    tok.bos_token = None
    tok.eos_token = TOKENS["eos"]
    tok.pad_token = TOKENS["pad"]
    tok.chat_template = QWEN2_CHAT_TEMPLATE
    tok.model_max_length = MODEL["max_position_embeddings"]

    end_id = tok.convert_tokens_to_ids("<|endoftext|>")
    im_end_id = tok.convert_tokens_to_ids("<|im_end|>")
    model_args = {k: v for k, v in MODEL.items() if k != "rope_theta"}
    config = Qwen2Config(
        vocab_size=len(tok),
        bos_token_id=end_id,
        eos_token_id=im_end_id,
        pad_token_id=end_id,
        rope_parameters={"rope_type": "default", "rope_theta": MODEL["rope_theta"]},
        **model_args,
    )
    torch.manual_seed(SEED)
    model = Qwen2ForCausalLM(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=end_id,
        eos_token_id=[im_end_id, end_id],
        pad_token_id=end_id,
        **GENERATION,
    )
    return model, tok


def build(out: Path) -> dict[str, Any]:
    import time

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = make_model_and_tokenizer(out)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    clean_tokenizer_config(out)

    t0 = time.perf_counter()
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    load_s = time.perf_counter() - t0
    tok = AutoTokenizer.from_pretrained(out)
    enc = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small only loses from extra threads (badly, on a busy box)
    try:
        with torch.inference_mode():
            reloaded.generate(**enc, max_new_tokens=2, do_sample=False)  # warm-up
            t0 = time.perf_counter()
            ids = reloaded.generate(**enc, max_new_tokens=50, min_new_tokens=50, do_sample=False)
            gen_s = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    assert ids.shape[1] - enc["input_ids"].shape[1] == 50, ids.shape
    return {
        "num_parameters": sum(p.numel() for p in reloaded.parameters()),
        "tokenizer_vocab_size": len(tok),
        "smoke_load_seconds": round(load_s, 3),
        "smoke_generate_50_tokens_seconds": round(gen_s, 3),
    }


KIT = Kit(
    name=KIT_NAME,
    architecture="Qwen2ForCausalLM (tiny random weights)",
    stands_in_for="Qwen/Qwen2-7B-Instruct",
    description="Tiny random-weight Qwen2 with a ChatML tokenizer, for the fastest LLM plumbing tests.",
    spec=spec,
    build=build,
    required_files=("config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"),
)
