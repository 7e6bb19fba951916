"""The local model kits: real classes load them with `from_pretrained` and give right-shaped output.

The kits are built into the repo's `models/` dir (what `make setup` does); `build_all` is idempotent,
so this is a no-op when they are already there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from deployments import kits as K  # noqa: E402

pytestmark = pytest.mark.models  # runs real model code on the kits: the slower unit tests

REPO = Path(__file__).resolve().parents[3]
MODELS_DIR = REPO / "models"
FRAME = 1920  # samples per latent frame at 48 kHz (25 latents/s)

STANDS_IN_FOR = {
    K.ACESTEP_KIT_DIR: "ACE-Step/acestep-v15-xl-turbo-diffusers",
    K.ACESTEP_BASE_KIT_DIR: "ACE-Step/acestep-v15-xl-base-diffusers",
    K.SDXL_TURBO_KIT_DIR: "stabilityai/sdxl-turbo",
    K.SMOLLM2_KIT_DIR: "Qwen/Qwen2-7B-Instruct",
    K.QWEN2_TINY_KIT_DIR: "Qwen/Qwen2-7B-Instruct",
}


@pytest.fixture(scope="session")
def kit_paths() -> dict[str, Path]:
    return K.build_all(MODELS_DIR)


# --------------------------------------------------------------------------- build / stamps


def test_kit_dir_names_and_paths(kit_paths):
    assert K.KIT_DIRS == (
        "acestep-v15-turbo-kit",
        "acestep-v15-base-kit",
        "sdxl-turbo-kit",
        "smollm2-135m-instruct",
        "qwen2-tiny-kit",
    )
    assert kit_paths == {name: MODELS_DIR / name for name in K.KIT_DIRS}
    assert all(p.is_dir() for p in kit_paths.values())


def test_stamps_record_what_each_kit_is(kit_paths):
    for name, path in kit_paths.items():
        stamp = json.loads((path / K.STAMP_NAME).read_text())
        assert stamp["kit"] == name
        assert stamp["stands_in_for"] == STANDS_IN_FOR[name]
        assert stamp["architecture"]
        assert isinstance(stamp["build_seconds"], float) and stamp["build_seconds"] > 0
        assert len(stamp["spec_hash"]) == 16


def test_second_build_skips_everything_quickly(kit_paths):
    before = {n: (p / K.STAMP_NAME).read_text() for n, p in kit_paths.items()}
    lines: list[str] = []
    t0 = time.perf_counter()
    again = K.build_all(MODELS_DIR, log=lines.append)
    elapsed = time.perf_counter() - t0
    assert again == kit_paths
    assert elapsed < 1.0, elapsed
    assert len(lines) == len(K.KIT_DIRS) and all("skipped" in line for line in lines)
    assert {n: (p / K.STAMP_NAME).read_text() for n, p in again.items()} == before  # nothing rebuilt


def test_cli_build_is_idempotent_and_prints_one_line_per_kit(kit_paths):
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "deployments.kits", "build", "--out", str(MODELS_DIR)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.split() and line.split()[0] in K.KIT_DIRS]
    assert [line.split()[0] for line in lines] == list(K.KIT_DIRS)
    assert all("skipped" in line and " s " in line for line in lines)
    assert elapsed < 10, elapsed  # ~0.1 s of work; generous for a busy 2-core box


def test_stale_stamp_rebuilds_and_force_rebuilds(tmp_path):
    name = K.SDXL_TURBO_KIT_DIR  # the cheapest kit to build
    first = K.build_all(tmp_path, kits=[name], log=lambda _: None)[name]
    stamp_path = first / K.STAMP_NAME
    stamp = json.loads(stamp_path.read_text())
    weights = (first / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()

    stamp["spec_hash"] = "0" * 16  # pretend the spec changed
    stamp_path.write_text(json.dumps(stamp))
    lines: list[str] = []
    K.build_all(tmp_path, kits=[name], log=lines.append)
    assert "built" in lines[0] and "skipped" not in lines[0]
    rebuilt = json.loads(stamp_path.read_text())
    assert rebuilt["spec_hash"] != "0" * 16
    # deterministic: same weights bytes every build
    assert (first / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == weights

    lines.clear()
    K.build_all(tmp_path, kits=[name], force=True, log=lines.append)
    assert "built" in lines[0] and "skipped" not in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [name]  # no temp dirs left


# --------------------------------------------------------------------------- ACE-Step


@pytest.fixture(scope="module")
def ace_pipe(kit_paths):
    from diffusers import AceStepPipeline

    t0 = time.perf_counter()
    pipe = AceStepPipeline.from_pretrained(kit_paths[K.ACESTEP_KIT_DIR])
    load_s = time.perf_counter() - t0
    pipe.set_progress_bar_config(disable=True)
    assert load_s < 10, load_s
    return pipe


def test_acestep_generates_48k_stereo_of_the_requested_duration(ace_pipe):
    import numpy as np
    import torch
    from diffusers import AceStepTransformer1DModel, AutoencoderOobleck, FlowMatchEulerDiscreteScheduler
    from transformers import Qwen3Model

    assert isinstance(ace_pipe.vae, AutoencoderOobleck)
    assert isinstance(ace_pipe.transformer, AceStepTransformer1DModel)
    assert isinstance(ace_pipe.text_encoder, Qwen3Model)
    assert isinstance(ace_pipe.scheduler, FlowMatchEulerDiscreteScheduler)
    assert ace_pipe.is_turbo and ace_pipe.sample_rate == 48000 and ace_pipe.latents_per_second == 25.0

    steps: list[int] = []

    def on_step(pipe, i, t, kwargs):
        steps.append(i)
        return {}

    audio = ace_pipe(
        prompt="pop, piano",
        lyrics="[verse]\nhello",
        audio_duration=5.0,
        num_inference_steps=8,
        guidance_scale=1.0,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
        callback_on_step_end=on_step,
    ).audios
    assert audio.shape[:2] == (1, 2)
    assert abs(audio.shape[2] - 5.0 * 48000) <= FRAME
    assert np.isfinite(audio).all() and 0 < np.abs(audio).max() <= 1.0
    assert steps == list(range(8))


def test_acestep_is_seeded_and_handles_odd_durations(ace_pipe):
    import torch

    def run(seed, duration=3.3):
        return ace_pipe(
            prompt="rock",
            lyrics="[chorus]\nyeah",
            audio_duration=duration,
            num_inference_steps=2,
            guidance_scale=1.0,
            generator=torch.Generator().manual_seed(seed),
            output_type="np",
        ).audios

    a, b, c = run(1), run(1), run(2)
    assert abs(a.shape[2] - 3.3 * 48000) <= FRAME
    assert (a == b).all() and not (a == c).all()


@pytest.mark.parametrize(
    "lyrics",
    [
        "[verse]\n在晨光中轻轻歌唱\n[chorus]\n音乐充满了今夜",
        "[verse]\n君と歌った夏の日を\n[chorus]\nメロディー 😀",
        "[verse]\n아침 햇살 속에서\nПод дождём мы танцуем",
    ],
)
def test_acestep_tokenizer_and_pipeline_take_non_latin_lyrics(ace_pipe, lyrics):
    import torch

    tok = ace_pipe.tokenizer
    ids = tok(lyrics).input_ids
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == lyrics  # byte-level BPE round-trips any UTF-8
    audio = ace_pipe(
        prompt="ballad",
        lyrics=lyrics,
        vocal_language="zh",
        audio_duration=1.0,
        num_inference_steps=1,
        guidance_scale=1.0,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).audios
    assert audio.shape == (1, 2, 48000)


def test_acestep_tokenizer_is_a_qwen2_fast_tokenizer(ace_pipe):
    from transformers import PreTrainedTokenizerFast, Qwen2TokenizerFast

    tok = ace_pipe.tokenizer
    assert isinstance(tok, Qwen2TokenizerFast) and isinstance(tok, PreTrainedTokenizerFast)
    assert tok.pad_token == "<|endoftext|>" and tok.pad_token_id is not None
    assert 1000 <= len(tok) <= 2048
    assert len(tok) == ace_pipe.text_encoder.config.vocab_size
    ids = tok("# Metas\n- bpm: N/A<|endoftext|>\n").input_ids
    assert tok.convert_tokens_to_ids("<|endoftext|>") in ids  # special token stays one token


# --------------------------------------------------------------------------- SDXL-Turbo


@pytest.fixture(scope="module")
def sdxl_pipe(kit_paths):
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(kit_paths[K.SDXL_TURBO_KIT_DIR])
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_sdxl_makes_a_512_image_in_one_step(sdxl_pipe):
    import torch
    from diffusers import EulerAncestralDiscreteScheduler
    from PIL import Image

    assert sdxl_pipe.vae_scale_factor == 8
    assert isinstance(sdxl_pipe.scheduler, EulerAncestralDiscreteScheduler)
    assert sdxl_pipe.scheduler.config.timestep_spacing == "trailing"
    t0 = time.perf_counter()
    image = sdxl_pipe(
        prompt="lofi hip hop, cover art",
        num_inference_steps=1,
        guidance_scale=0.0,
        height=512,
        width=512,
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    elapsed = time.perf_counter() - t0
    assert isinstance(image, Image.Image) and image.size == (512, 512) and image.mode == "RGB"
    assert elapsed < 30, elapsed


def test_sdxl_latents_are_f8_and_default_size_is_512(sdxl_pipe):
    import torch

    latents = sdxl_pipe(
        prompt="neon city",
        num_inference_steps=1,
        guidance_scale=0.0,
        output_type="latent",
        generator=torch.Generator().manual_seed(0),
    ).images
    assert tuple(latents.shape) == (1, 4, 64, 64)


def test_sdxl_clip_tokenizers_are_trained_bpe_with_end_of_word(kit_paths):
    from transformers import CLIPTokenizer

    kit = kit_paths[K.SDXL_TURBO_KIT_DIR]
    for sub in ("tokenizer", "tokenizer_2"):
        vocab = json.loads((kit / sub / "vocab.json").read_text())
        merges = (kit / sub / "merges.txt").read_text().splitlines()
        assert merges[0].startswith("#version") and len(merges) > 100
        assert "<|startoftext|>" in vocab and "<|endoftext|>" in vocab
        assert sum(1 for t in vocab if t.endswith("</w>")) >= 256
        tok = CLIPTokenizer.from_pretrained(kit / sub)
        assert tok.model_max_length == 77
        enc = tok("Café 音楽 😀 NEON city", padding="max_length", max_length=77, truncation=True)
        assert len(enc.input_ids) == 77 and enc.input_ids[0] == tok.bos_token_id
        assert tok.unk_token_id not in enc.input_ids[1 : enc.attention_mask.index(0) - 1]


# --------------------------------------------------------------------------- LLMs


def _chat(tok, text):
    return tok.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )


@pytest.fixture(scope="module")
def smollm(kit_paths):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = kit_paths[K.SMOLLM2_KIT_DIR]
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(path)
    load_s = time.perf_counter() - t0
    assert load_s < 20, load_s
    return model, AutoTokenizer.from_pretrained(path)


def test_smollm2_is_a_plain_hf_folder_with_a_chat_template(kit_paths, smollm):
    import torch

    model, tok = smollm
    path = kit_paths[K.SMOLLM2_KIT_DIR]
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config
    assert (path / "chat_template.jinja").is_file() and (path / "model.safetensors").is_file()
    assert model.dtype == torch.float32 and type(model).__name__ == "LlamaForCausalLM"
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id is not None
    enc = _chat(tok, "hi")
    text = tok.decode(enc["input_ids"][0])
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert text.count("<|im_start|>") == 3  # system + user + generation prompt; no extra BOS


def test_smollm2_writes_readable_english(smollm):
    import re

    import torch

    model, tok = smollm
    enc = _chat(tok, "Write a two-line poem about rain")
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=40, do_sample=False)
    text = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    words = re.findall(r"[A-Za-z']+", text)
    assert len(words) >= 8, text
    assert sum(c.isascii() for c in text) / max(len(text), 1) > 0.95, text
    assert "rain" in text.lower(), text

    enc = _chat(tok, "What is the capital of France?")
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def test_qwen2_tiny_is_real_qwen2_and_generates_fast(kit_paths):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2ForCausalLM

    path = kit_paths[K.QWEN2_TINY_KIT_DIR]
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert isinstance(model, Qwen2ForCausalLM)
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (128, 2, 4, 2)
    assert cfg.hidden_size // cfg.num_attention_heads == 32  # the smallest head vLLM's CPU attention serves
    assert cfg.vocab_size == len(tok)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok.convert_tokens_to_ids("<|im_end|>") in model.generation_config.eos_token_id
    enc = _chat(tok, "hi")
    assert tok.decode(enc["input_ids"][0]).startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")

    times = []
    with torch.inference_mode():
        model.generate(**enc, max_new_tokens=4, do_sample=False)  # warm up
        for _ in range(3):
            t0 = time.perf_counter()
            out = model.generate(**enc, max_new_tokens=50, min_new_tokens=50, do_sample=False)
            times.append(time.perf_counter() - t0)
    assert out.shape[1] - enc["input_ids"].shape[1] == 50
    # ~0.1 s when the box is idle; generous because other work may share the 2 cores
    assert min(times) < 5, times

    # batched, left-padded generation (what a batching engine does)
    tok.padding_side = "left"
    prompts = [
        tok.apply_chat_template([{"role": "user", "content": c}], add_generation_prompt=True, tokenize=False)
        for c in ("hi", "write a much longer request about songs")
    ]
    batch = tok(prompts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert out.shape == (2, batch["input_ids"].shape[1] + 5)
