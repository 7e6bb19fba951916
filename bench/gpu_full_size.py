"""Full-size benchmark of the three production models, with random weights (nothing is downloaded).

Builds each production architecture from configs transcribed into `bench/model_configs/*.json`
(Qwen2-7B-Instruct, ACE-Step 1.5 XL turbo, SDXL-Turbo), saves it with `save_pretrained` into a
model directory, loads it through the project's own engines (`deployments.llm.LLMEngine`,
`deployments.music.MusicEngine`, `deployments.cover.CoverEngine`, the code the Serve replicas run)
and measures:

* LLM: tokens/s writing a 400-token lyric at batch 1 and batch 8 (greedy, every row forced to its
  full budget with `min_new_tokens`), and the batch-8 / batch-1 throughput ratio (target >= 3x).
* Music: real-time factor of a 180 s song at 8 steps (render seconds / 180).
* Cover: latency of a 512x512 image at 1 step, batch 1 and batch 4.
* Engine options: dtype (bf16 vs fp16), `torch.compile` of the DiT / UNet (compile time apart),
  diffusers model CPU offload (latency and peak memory for small GPUs), and each engine's own
  speed option switched off: music `fast_vae_decoder` (diffusers' Oobleck decoder), cover
  `channels_last` (default memory layout).
* Peak GPU memory (`torch.cuda.max_memory_allocated` after a reset) of each engine, and of all
  three resident on one GPU running one song, checked against configs/prod.yaml's `num_gpus`
  shares of an 80 GB GPU.
* Optionally (`--e2e`) one song through the real app: `serve_app.app:build_app` with
  configs/prod.yaml's args (model dirs swapped for the random-weight ones, local storage) on a
  local Ray Serve, timing one `POST /generate-with-lyrics`.

Full-size parameter counts are always computed (models built on the meta device) and checked
against the published sizes, on any machine.

On a machine without CUDA the same code runs at a reduced size (`--size reduced`, the default there):
small configs from the same JSON files, a 10 s song, 128 LLM tokens, 256x256 covers, so every part
takes seconds and CI runs it (tests/unit/bench/test_gpu_full_size.py).

    # On a GPU node (CUDA: full size is the default). Smoke-test the plumbing first (~1 min):
    .venv/bin/python bench/gpu_full_size.py --size reduced
    # Everything at full size (~33 GB of model folders go to a temp dir; roughly 10-15 min on an
    # H100, most of it folder writes, model loads and torch.compile):
    .venv/bin/python bench/gpu_full_size.py
    # ...or split into shorter commands that reuse the folders and merge into one JSON:
    D=/tmp/songsmith-bench-models
    .venv/bin/python bench/gpu_full_size.py --models-dir $D --parts llm,resident
    .venv/bin/python bench/gpu_full_size.py --models-dir $D --parts music --merge
    .venv/bin/python bench/gpu_full_size.py --models-dir $D --parts cover --merge
    .venv/bin/python bench/gpu_full_size.py --models-dir $D --parts none --e2e --merge
    # CPU / CI (reduced size, ~40 s on 2 cores):
    .venv/bin/python bench/gpu_full_size.py --size reduced --device cpu

Writes `bench/results/gpu_full_size-<device>.json` (or `--out`) and prints a Markdown report.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import gc
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

for _k, _v in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}.items():
    os.environ.setdefault(_k, _v)

CONFIG_DIR = REPO / "bench" / "model_configs"
RESULTS_DIR = REPO / "bench" / "results"
MODELS_DIR = REPO / "models"
PROD_CONFIG = REPO / "configs" / "prod.yaml"

SCHEMA_VERSION = 1
GIB = 2**30
GB = 1e9
LLM_BATCH_TARGET = 3.0  # batch-8 throughput / batch-1 throughput
PARTS = ("llm", "music", "cover", "resident")
MUSIC_SPECS = {"xl-turbo": "acestep-v15-xl-turbo", "turbo": "acestep-v15-turbo"}
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
PROD_DTYPES = {"llm": "bfloat16", "music": "bfloat16", "cover": "float16"}

SUBJECTS = [
    "driving through a neon city at night",
    "an old dog waiting at the door for someone who is not coming back",
    "summer love on a crowded beach",
    "a lighthouse keeper who talks to the sea",
    "winning the final game against every prediction",
    "coffee and rain on a slow Sunday morning",
    "leaving a small town for the first time",
    "a letter found inside a second-hand book",
]
SONG_DESCRIPTION = "an upbeat synthwave song about driving through a neon city at night"
SONG_TAGS = "synthwave, upbeat, 118 bpm, analog synth, gated drums, female vocals, night drive"
# Written for this benchmark (~400 LLM tokens): the length a 400-token lyric budget produces.
SONG_LYRICS = """[verse]
Streetlights flicker on the boulevard
Engine humming like a second heart
Radio is playing something we forgot
Every red light turns to green for us tonight
Window down and the city breathing in
Neon letters spelling out our names again
No one's waiting at the end of this road
So we keep on driving where the signals glow

[chorus]
Run, run through the electric night
Hold the wheel and hold me tight
Every mile a little brighter
Every turn a little lighter
Run, run till the morning light
We were made for this midnight ride

[verse]
Billboards shining like a second sun
Shadows racing but they never catch us
Static whispers from a station far away
Telling stories of the ones who couldn't stay
Chrome reflections on the rain-soaked street
Bass line pulsing underneath our feet
If the dawn comes we will let it find us
Leave the quiet of the suburbs far behind us

[chorus]
Run, run through the electric night
Hold the wheel and hold me tight
Every mile a little brighter
Every turn a little lighter
Run, run till the morning light
We were made for this midnight ride

[bridge]
And if the engine fades, if the stars burn out
We will still have the echo of this sound
Turn it up, turn it up, let the skyline shake
Nothing ever breaks when we're wide awake

[chorus]
Run, run through the electric night
Hold the wheel and hold me tight
Every mile a little brighter
Every turn a little lighter
Run, run till the morning light
We were made for this midnight ride

[outro]
Midnight ride, midnight ride
Fading out on the other side
"""


# --------------------------------------------------------------------------- workloads


@dataclass(frozen=True)
class Workload:
    llm_new_tokens: int
    song_s: float
    cover_size: int
    repeats: int
    music_steps: int = 8
    cover_steps: int = 1
    llm_batches: tuple[int, ...] = (1, 8)
    cover_batches: tuple[int, ...] = (1, 4)


WORKLOADS = {
    "full": Workload(llm_new_tokens=400, song_s=180.0, cover_size=512, repeats=2),
    # 128 tokens (not 32): the batch-8 prefill and tokenization are fixed costs that 400 tokens
    # amortize at full size; 128 keeps their share comparable.
    "reduced": Workload(llm_new_tokens=128, song_s=10.0, cover_size=256, repeats=5),
}


@dataclass
class Runtime:
    size: str
    device: Any  # torch.device
    threads: int | None
    options: str  # "all" | "baseline"
    music_variant: str
    gpu_gb: float

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def engine_common(self) -> dict[str, Any]:
        return {
            "device": self.device.type if not self.cuda else str(self.device),
            "num_threads": None if self.cuda else self.threads,
            "warmup": False,  # every measurement here does its own warm-up
            "local_files_only": True,
        }


# --------------------------------------------------------------------------- specs and configs


def load_spec(name: str) -> dict[str, Any]:
    return json.loads((CONFIG_DIR / f"{name}.json").read_text())


def component_config(comp: dict[str, Any], size: str) -> dict[str, Any]:
    cfg = copy.deepcopy(comp["config"])
    if size == "reduced":
        cfg.update(copy.deepcopy(comp.get("reduced", {})))
    return cfg


_HF_META_KEYS = ("architectures", "torch_dtype", "model_type", "transformers_version", "_name_or_path")


def _hf_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    """A transcribed transformers config.json as constructor kwargs (rope_theta -> rope_parameters)."""
    out = {k: v for k, v in cfg.items() if k not in _HF_META_KEYS}
    if "rope_theta" in out:
        out["rope_parameters"] = {"rope_type": "default", "rope_theta": float(out.pop("rope_theta"))}
    return out


def _chatml_ids(tok) -> tuple[int, int]:
    end_id = tok.convert_tokens_to_ids("<|endoftext|>")
    im_end_id = tok.convert_tokens_to_ids("<|im_end|>")
    if end_id is None or im_end_id is None or end_id == tok.unk_token_id:
        raise ValueError("the LLM tokenizer needs ChatML special tokens <|endoftext|> and <|im_end|>")
    return end_id, im_end_id


def llm_config(spec: dict[str, Any], size: str, tok=None):
    from transformers import Qwen2Config

    raw = copy.deepcopy(spec["config"])
    if size == "reduced":
        raw.update(copy.deepcopy(spec["reduced"]["config"]))
    kw = _hf_kwargs(raw)
    if tok is not None:
        end_id, im_end_id = _chatml_ids(tok)
        kw.update(bos_token_id=end_id, eos_token_id=im_end_id, pad_token_id=end_id)
        if kw.get("vocab_size") is None:
            kw["vocab_size"] = len(tok)
        if kw["vocab_size"] < len(tok):
            raise ValueError(f"LLM vocab_size {kw['vocab_size']} < tokenizer size {len(tok)}")
    elif kw.get("vocab_size") is None:
        raise ValueError("reduced LLM config takes its vocab_size from the tokenizer")
    return Qwen2Config(**kw)


def music_configs(spec: dict[str, Any], size: str, tok=None) -> dict[str, Any]:
    """Constructor kwargs of the four ACE-Step modules (+ scheduler), with their ties checked."""
    comps = spec["components"]
    tr = component_config(comps["transformer"], size)
    ce = component_config(comps["condition_encoder"], size)
    vae = component_config(comps["vae"], size)
    te = _hf_kwargs(component_config(comps["text_encoder"], size))
    if tok is not None:
        te.update(pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
        if te.get("vocab_size") is None:
            te["vocab_size"] = len(tok)
        if te["vocab_size"] < len(tok):
            raise ValueError(f"text encoder vocab_size {te['vocab_size']} < tokenizer size {len(tok)}")
    elif te.get("vocab_size") is None:
        raise ValueError("reduced text encoder config takes its vocab_size from the tokenizer")
    acoustic = tr["audio_acoustic_hidden_dim"]
    ties = {
        "condition_encoder.hidden_size == transformer.encoder_hidden_size":
            ce["hidden_size"] == (tr.get("encoder_hidden_size") or tr["hidden_size"]),
        "condition_encoder.text_hidden_dim == text_encoder.hidden_size": ce["text_hidden_dim"] == te["hidden_size"],
        "condition_encoder.timbre_hidden_dim == transformer.audio_acoustic_hidden_dim":
            ce["timbre_hidden_dim"] == acoustic,
        "vae.decoder_input_channels == transformer.audio_acoustic_hidden_dim":
            vae["decoder_input_channels"] == acoustic,
        "transformer.in_channels == 3 * audio_acoustic_hidden_dim": tr["in_channels"] == 3 * acoustic,
    }
    broken = [k for k, ok in ties.items() if not ok]
    if broken:
        raise ValueError(f"{spec['model_id']} ({size}): inconsistent configs: {broken}")
    return {"transformer": tr, "condition_encoder": ce, "text_encoder": te, "vae": vae,
            "scheduler": dict(comps["scheduler"]["config"])}


def cover_configs(spec: dict[str, Any], size: str, tok=None, tok2=None) -> dict[str, Any]:
    comps = spec["components"]
    unet = component_config(comps["unet"], size)
    vae = component_config(comps["vae"], size)
    tes = {}
    for name, t in (("text_encoder", tok), ("text_encoder_2", tok2)):
        cfg = _hf_kwargs(component_config(comps[name], size))
        if t is not None:
            cfg.update(bos_token_id=t.bos_token_id, eos_token_id=t.eos_token_id, pad_token_id=t.pad_token_id)
            if cfg.get("vocab_size") is None:
                cfg["vocab_size"] = len(t)
            if cfg["vocab_size"] < len(t):
                raise ValueError(f"{name} vocab_size {cfg['vocab_size']} < tokenizer size {len(t)}")
        elif cfg.get("vocab_size") is None:
            raise ValueError(f"reduced {name} config takes its vocab_size from the tokenizer")
        tes[name] = cfg
    te, te2 = tes["text_encoder"], tes["text_encoder_2"]
    ties = {
        "unet.cross_attention_dim == te.hidden + te2.hidden":
            unet["cross_attention_dim"] == te["hidden_size"] + te2["hidden_size"],
        "unet.projection_class_embeddings_input_dim == 6 * addition_time_embed_dim + te2.projection_dim":
            unet["projection_class_embeddings_input_dim"]
            == 6 * unet["addition_time_embed_dim"] + te2["projection_dim"],
    }
    broken = [k for k, ok in ties.items() if not ok]
    if broken:
        raise ValueError(f"{spec['model_id']} ({size}): inconsistent configs: {broken}")
    return {"unet": unet, "vae": vae, "text_encoder": te, "text_encoder_2": te2,
            "scheduler": dict(comps["scheduler"]["config"])}


def dit_params_formula(cfg: dict[str, Any]) -> int:
    """AceStepTransformer1DModel's parameter count in closed form (independent of diffusers' code)."""
    h, inter, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    hd, nh, nkv = cfg["head_dim"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    enc = cfg.get("encoder_hidden_size") or h
    p, cin, aco = cfg["patch_size"], cfg["in_channels"], cfg["audio_acoustic_hidden_dim"]
    bias = 1 if cfg.get("attention_bias") else 0
    attn = h * nh * hd + 2 * h * nkv * hd + nh * hd * h + 2 * hd  # q, k, v, o + per-head q/k RMSNorm
    attn += bias * (nh * hd + 2 * nkv * hd + h)
    layer = 2 * attn + 3 * h + 3 * h * inter + 6 * h  # self + cross attn, 3 RMSNorms, SwiGLU MLP, AdaLN table
    time_embed = (256 * h + h) + (h * h + h) + (h * 6 * h + 6 * h)
    top = (cin * h * p + h) + 2 * time_embed + (enc * h + h) + h + (h * aco * p + aco) + 2 * h
    return n * layer + top


# --------------------------------------------------------------------------- tokenizers (kits)


def kit_dir(rel: str) -> Path:
    return MODELS_DIR / rel


def ensure_kits(rels: list[str]) -> None:
    """Build the kits the tokenizers come from when they are missing (a no-op after `make setup`)."""
    missing = sorted({r.split("/")[0] for r in rels if not (kit_dir(r) / "tokenizer_config.json").is_file()})
    if missing:
        from deployments.kits import build_all

        build_all(MODELS_DIR, kits=missing, log=lambda line: print(f"[kits] {line}", flush=True))


def load_tokenizer(rel: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(kit_dir(rel))


def copy_tokenizer_files(src: Path, dst: Path) -> None:
    """Copy a kit's tokenizer files verbatim (what the engines' AutoTokenizer reads)."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and (f.name.startswith(("tokenizer", "special_tokens", "added_tokens", "vocab", "merges"))
                            or f.name == "chat_template.jinja"):
            shutil.copy2(f, dst / f.name)


def llm_tokenizer_rel(spec: dict[str, Any], size: str) -> str:
    return spec["tokenizer"]["full" if size == "full" else "reduced"]


# --------------------------------------------------------------------------- model construction


def _torch():
    import torch

    return torch


def quiet_libraries() -> None:
    """No progress bars or dtype-cast chatter from diffusers/transformers in the report."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def count_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def make_llm(cfg, device, dtype):
    from transformers import Qwen2ForCausalLM

    torch = _torch()
    with torch.device(device):
        if device == "meta" or str(device) == "meta":
            return Qwen2ForCausalLM(cfg)
        return Qwen2ForCausalLM._from_config(cfg, dtype=dtype).eval()


def make_music_modules(cfgs: dict[str, Any], device, dtype, seed: int = 1234) -> dict[str, Any]:
    from diffusers import AceStepConditionEncoder, AceStepTransformer1DModel, AutoencoderOobleck
    from transformers import Qwen3Config, Qwen3Model

    torch = _torch()
    meta = str(device) == "meta"
    out = {}
    makers = {
        "vae": lambda: AutoencoderOobleck(**cfgs["vae"]),
        "text_encoder": lambda: Qwen3Model(Qwen3Config(**cfgs["text_encoder"])),
        "transformer": lambda: AceStepTransformer1DModel(**cfgs["transformer"]),
        "condition_encoder": lambda: AceStepConditionEncoder(**cfgs["condition_encoder"]),
    }
    with torch.device(device), _quiet_weight_norm():
        for i, (name, make) in enumerate(makers.items()):
            torch.manual_seed(seed + i)
            m = make()
            if name == "condition_encoder" and not meta:
                # The real checkpoint stores VAE-encoded silence here; small noise keeps the timbre
                # encoder's input non-degenerate (as the kit does).
                sl = m.silence_latent
                g = torch.Generator(device=sl.device).manual_seed(seed + 10)
                sl.copy_(0.1 * torch.randn(sl.shape, generator=g, device=sl.device))
            # Cast each module as soon as it exists: the full-size DiT alone is 17 GB in float32.
            out[name] = m if meta else m.to(dtype).eval()
    return out


def make_cover_modules(cfgs: dict[str, Any], device, dtype, seed: int = 0) -> dict[str, Any]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch = _torch()
    makers = {
        "unet": lambda: UNet2DConditionModel(**cfgs["unet"]),
        "vae": lambda: AutoencoderKL(**cfgs["vae"]),
        "text_encoder": lambda: CLIPTextModel(CLIPTextConfig(**cfgs["text_encoder"])),
        "text_encoder_2": lambda: CLIPTextModelWithProjection(CLIPTextConfig(**cfgs["text_encoder_2"])),
    }
    meta = str(device) == "meta"
    out = {}
    with torch.device(device):
        for i, (name, make) in enumerate(makers.items()):
            torch.manual_seed(seed + i)
            m = make()
            out[name] = m if meta else m.to(dtype).eval()
    return out


@contextlib.contextmanager
def _quiet_weight_norm():
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*weight_norm.*", category=FutureWarning)
        yield


# --------------------------------------------------------------------------- parameter counts


def full_size_param_counts(music_variant: str) -> dict[str, Any]:
    """Build every full-size module on the meta device and check it against the published sizes."""
    torch = _torch()
    rows: dict[str, Any] = {}

    def row(key, model_id, cls, params, dtype, ref=None, ref_source=None, check=False, **extra):
        rel = None if not ref else (params - ref) / ref
        rows[key] = {
            "model_id": model_id, "class": cls, "params": int(params), "dtype": dtype,
            "bytes": int(params * DTYPE_BYTES[dtype]), "reference": ref, "reference_source": ref_source,
            "rel_err": rel, "checked": bool(check and ref), "ok": (abs(rel) <= 0.02) if (check and ref) else None,
            **extra,
        }

    llm_spec = load_spec("qwen2-7b-instruct")
    with torch.device("meta"):
        m = make_llm(llm_config(llm_spec, "full"), "meta", None)
    row("llm", llm_spec["model_id"], type(m).__name__, count_params(m), llm_spec["dtype"],
        llm_spec["published_params"]["model"], llm_spec["published_params"]["source"], True)
    del m

    ms = load_spec(MUSIC_SPECS[music_variant])
    cfgs = music_configs(ms, "full")
    mods = make_music_modules(cfgs, "meta", None)
    for name, mod in mods.items():
        exp = ms["expected_params"].get(name, {})
        extra = {}
        if name == "transformer":
            extra = {"formula_params": dit_params_formula(cfgs["transformer"]), "nominal": exp.get("nominal")}
        row(f"music.{name}", ms["model_id"], type(mod).__name__, count_params(mod), ms["dtype"],
            exp.get("params"), exp.get("source"), exp.get("check", False), **extra)
    del mods

    cs = load_spec("sdxl-turbo")
    mods = make_cover_modules(cover_configs(cs, "full"), "meta", None)
    for name, mod in mods.items():
        row(f"cover.{name}", cs["model_id"], type(mod).__name__, count_params(mod), cs["dtype"],
            cs["published_params"].get(name), cs["published_params"]["source"], True)
    del mods
    return rows


def weights_estimate(counts: dict[str, Any]) -> dict[str, int]:
    """Weights of each engine at its production dtype, from the full-size counts."""
    out = {"llm": 0, "music": 0, "cover": 0}
    for key, r in counts.items():
        out[key.split(".")[0]] += r["bytes"]
    return out


# --------------------------------------------------------------------------- model directories


def _versions() -> dict[str, str | None]:
    import diffusers
    import transformers

    torch = _torch()
    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
    }
    for mod in ("accelerate", "ray"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - informational
            out[mod] = None
    return out


def _stamp(part: str, size: str, spec: dict[str, Any], tokenizer_rels: list[str], dtype: str) -> str:
    tok_stamps = []
    for rel in tokenizer_rels:
        kit_json = kit_dir(rel.split("/")[0]) / "kit.json"
        tok_stamps.append(json.loads(kit_json.read_text()).get("spec_hash") if kit_json.is_file() else rel)
    v = _versions()
    blob = json.dumps({"part": part, "size": size, "spec": spec, "tok": tok_stamps, "dtype": dtype,
                       "libs": [v["diffusers"], v["transformers"]]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def build_model_dirs(root: Path, rt: Runtime, parts: set[str]) -> dict[str, Any]:
    """Random-weight model folders, saved like the real checkpoints, for the engines to load.

    Full size builds on the GPU (fast random init) in the production dtype; a folder whose stamp
    matches (same spec, size, tokenizer kit and library versions) is reused.
    """
    torch = _torch()
    build_device = rt.device if (rt.cuda and rt.size == "full") else torch.device("cpu")
    out: dict[str, Any] = {}
    want = set(parts)
    if "resident" in want:
        want |= {"llm", "music", "cover"}

    def reuse_or_build(part: str, spec, toks: list[str], dtype_name: str, build: Callable[[Path], None]):
        path = root / part
        stamp = _stamp(part, rt.size, spec, toks, dtype_name)
        stamp_file = path / "bench_stamp.json"
        if stamp_file.is_file() and json.loads(stamp_file.read_text()).get("stamp") == stamp:
            out[part] = {"path": str(path), "build_s": 0.0, "reused": True, "bytes": _dir_bytes(path)}
            return
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        t0 = time.perf_counter()
        build(path)
        _free_memory()
        stamp_file.write_text(json.dumps({"stamp": stamp, "size": rt.size, "built_at": _now()}))
        out[part] = {"path": str(path), "build_s": round(time.perf_counter() - t0, 2), "reused": False,
                     "bytes": _dir_bytes(path)}
        print(f"[build] {part:<6} {out[part]['bytes'] / GIB:7.2f} GiB in {out[part]['build_s']:.1f} s -> {path}",
              flush=True)

    save_dtype = (lambda name: getattr(torch, name)) if rt.size == "full" else (lambda name: torch.float32)

    if "llm" in want:
        spec = load_spec("qwen2-7b-instruct")
        rel = llm_tokenizer_rel(spec, rt.size)

        def build_llm(path: Path) -> None:
            from transformers import GenerationConfig

            tok = load_tokenizer(rel)
            cfg = llm_config(spec, rt.size, tok)
            torch.manual_seed(4321)
            model = make_llm(cfg, build_device, save_dtype(spec["dtype"]))
            end_id, im_end_id = _chatml_ids(tok)
            gen = dict(spec["generation_config"])
            gen.update(bos_token_id=end_id, pad_token_id=end_id, eos_token_id=[im_end_id, end_id])
            model.generation_config = GenerationConfig(**gen)
            model.save_pretrained(path)
            copy_tokenizer_files(kit_dir(rel), path)
            del model

        reuse_or_build("llm", spec, [rel], spec["dtype"], build_llm)

    if "music" in want:
        spec = load_spec(MUSIC_SPECS[rt.music_variant])
        rel = f"{spec['tokenizer']['kit']}/{spec['tokenizer']['subfolder']}"

        def build_music(path: Path) -> None:
            from diffusers import AceStepPipeline, FlowMatchEulerDiscreteScheduler

            tok = load_tokenizer(rel)
            cfgs = music_configs(spec, rt.size, tok)
            mods = make_music_modules(cfgs, build_device, save_dtype(spec["dtype"]))
            scheduler = FlowMatchEulerDiscreteScheduler(**cfgs["scheduler"])
            pipe = AceStepPipeline(tokenizer=tok, scheduler=scheduler, **mods)
            pipe.save_pretrained(path)
            copy_tokenizer_files(kit_dir(rel), path / "tokenizer")
            del pipe, mods

        reuse_or_build("music", spec, [rel], spec["dtype"], build_music)

    if "cover" in want:
        spec = load_spec("sdxl-turbo")
        kit = spec["tokenizer"]["kit"]
        rels = [f"{kit}/{sub}" for sub in spec["tokenizer"]["subfolders"]]

        def build_cover(path: Path) -> None:
            from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionXLPipeline

            tok, tok2 = (load_tokenizer(r) for r in rels)
            cfgs = cover_configs(spec, rt.size, tok, tok2)
            mods = make_cover_modules(cfgs, build_device, save_dtype(spec["dtype"]))
            pipe = StableDiffusionXLPipeline(
                tokenizer=tok, tokenizer_2=tok2, scheduler=EulerAncestralDiscreteScheduler(**cfgs["scheduler"]),
                force_zeros_for_empty_prompt=True, add_watermarker=False, **mods,
            )
            pipe.save_pretrained(path)
            for r, sub in zip(rels, spec["tokenizer"]["subfolders"]):
                copy_tokenizer_files(kit_dir(r), path / sub)
            del pipe, mods

        reuse_or_build("cover", spec, rels, spec["dtype"], build_cover)
    return out


# --------------------------------------------------------------------------- measurement helpers


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _free_memory() -> None:
    gc.collect()
    torch = _torch()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def _rss() -> dict[str, int | None]:
    out: dict[str, int | None] = {"rss_bytes": None, "rss_peak_bytes": None}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss_bytes"] = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                out["rss_peak_bytes"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


class Gpu:
    """CUDA sync, peak-memory resets and snapshots; every number is None on CPU (RSS is kept)."""

    def __init__(self, device):
        self.torch = _torch()
        self.on = device.type == "cuda"
        self.device = device

    def sync(self) -> None:
        if self.on:
            self.torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        if self.on:
            self.sync()
            self.torch.cuda.reset_peak_memory_stats(self.device)

    def clear(self) -> None:
        """Free everything unreferenced, then start a fresh peak window."""
        gc.collect()
        if self.on:
            self.sync()
            self.torch.cuda.empty_cache()
        self.reset_peak()

    def allocated(self) -> int | None:
        return int(self.torch.cuda.memory_allocated(self.device)) if self.on else None

    def snapshot(self) -> dict[str, int | None]:
        c = self.torch.cuda
        snap = {
            "allocated_bytes": int(c.memory_allocated(self.device)) if self.on else None,
            "reserved_bytes": int(c.memory_reserved(self.device)) if self.on else None,
            "peak_allocated_bytes": int(c.max_memory_allocated(self.device)) if self.on else None,
            "peak_reserved_bytes": int(c.max_memory_reserved(self.device)) if self.on else None,
        }
        if self.on:
            free, total = c.mem_get_info(self.device)
            snap["device_used_bytes"] = int(total - free)  # every process and context on the GPU
        snap.update(_rss())
        return snap


def timed(gpu: Gpu, fn: Callable[[], Any]) -> tuple[Any, float]:
    gpu.sync()
    t0 = time.perf_counter()
    out = fn()
    gpu.sync()
    return out, time.perf_counter() - t0


def _stats(samples: list[float]) -> dict[str, Any]:
    return {"best_s": min(samples), "median_s": statistics.median(samples), "samples_s": [round(s, 6) for s in samples]}


def _peak(*snaps: dict[str, Any]) -> int | None:
    vals = [s.get("peak_allocated_bytes") for s in snaps if s and s.get("peak_allocated_bytes") is not None]
    return max(vals) if vals else None


def _error(exc: BaseException) -> dict[str, str]:
    return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=8)}


@contextlib.contextmanager
def forced_tokens(engine, n: int):
    """Random weights must not stop early: suppress every stop token for the first n new tokens.

    `generate` starts from the model's generation_config, so this reaches LLMEngine.complete_batch
    unchanged (it passes only max_new_tokens, the per-row budgets and the repetition penalty).
    """
    gen = engine.model.generation_config
    old = gen.min_new_tokens
    gen.min_new_tokens = n
    try:
        yield
    finally:
        gen.min_new_tokens = old


# --------------------------------------------------------------------------- LLM


def llm_args(path: str, rt: Runtime, wl: Workload, dtype: str):
    from deployments.config import LLMArgs

    return LLMArgs(model=path, dtype=dtype, max_new_tokens_lyrics=wl.llm_new_tokens,
                   max_batch_size=max(wl.llm_batches), **rt.engine_common())


def _llm_dtype(rt: Runtime) -> str:
    return PROD_DTYPES["llm"] if rt.cuda else "float32"


def bench_llm(path: str, rt: Runtime, wl: Workload, gpu: Gpu) -> dict[str, Any]:
    from deployments.llm import Completion, LLMEngine, lyrics_completion

    dtype = _llm_dtype(rt)
    args = llm_args(path, rt, wl, dtype)
    gpu.clear()
    engine, load_s = timed(gpu, lambda: LLMEngine(args))
    mem_load = gpu.snapshot()
    weights = gpu.allocated()
    n = wl.llm_new_tokens
    chats = [lyrics_completion(args, s).chat for s in SUBJECTS]

    def run(batch: int, tokens: int):
        with forced_tokens(engine, tokens):
            return engine.complete_batch([Completion(c, tokens) for c in chats[:batch]])

    try:
        for b in wl.llm_batches:  # warm-up: kernels, cuBLAS handles, allocator pools for both shapes
            run(b, min(8, n))
        gpu.reset_peak()
        samples: dict[int, list[float]] = {b: [] for b in wl.llm_batches}
        walls: dict[int, list[float]] = {b: [] for b in wl.llm_batches}
        full_budget = True
        for _ in range(wl.repeats):  # interleaved, so drifting machine load hits both sizes alike
            for b in wl.llm_batches:
                c0 = time.process_time()
                answers, s = timed(gpu, lambda b=b: run(b, n))
                cpu_s = time.process_time() - c0
                samples[b].append(s if rt.cuda else cpu_s)
                walls[b].append(s)
                full_budget &= all(a.truncated for a in answers)  # no stop token before the budget
        mem_run = gpu.snapshot()
    finally:
        del engine
        _free_memory()
    batches = {}
    for b, ss in samples.items():
        st = _stats(ss)
        tokens = b * n
        batches[str(b)] = {"batch": b, "new_tokens_per_row": n, "tokens": tokens, **st,
                           "tokens_per_s": tokens / st["best_s"], "tokens_per_s_median": tokens / st["median_s"],
                           "wall_best_s": min(walls[b]), "wall_tokens_per_s": tokens / min(walls[b])}
    lo, hi = str(min(wl.llm_batches)), str(max(wl.llm_batches))
    ratio = batches[hi]["tokens_per_s"] / batches[lo]["tokens_per_s"]
    ratio_wall = batches[hi]["wall_tokens_per_s"] / batches[lo]["wall_tokens_per_s"]
    ratio_median = batches[hi]["tokens_per_s_median"] / batches[lo]["tokens_per_s_median"]
    return {
        "engine": f"deployments.llm.LLMEngine.complete_batch (greedy, repetition_penalty {args.repetition_penalty:g})",
        "dtype": dtype, "load_s": load_s, "weights_bytes": weights,
        # A shared CPU box's wall clock mostly measures the neighbours: on CPU the seconds are this
        # process's CPU time (one torch thread); wall-clock figures are kept beside them.
        "clock": "wall (CUDA-synchronized)" if rt.cuda else "process CPU time (time.process_time), 1 torch thread",
        "batches": batches, f"batch{hi}_over_batch{lo}": ratio, f"batch{hi}_over_batch{lo}_median": ratio_median,
        "throughput_ratio": ratio, "throughput_ratio_wall": ratio_wall,
        "target_ratio": LLM_BATCH_TARGET, "meets_target": ratio >= LLM_BATCH_TARGET,
        "all_rows_full_budget": full_budget,
        "memory_load": mem_load, "memory_run": mem_run, "peak_bytes": _peak(mem_load, mem_run),
    }


# --------------------------------------------------------------------------- music


@dataclass(frozen=True)
class Variant:
    name: str
    dtype: str
    torch_compile: bool = False
    cpu_offload: bool = False
    baseline: bool = False
    engine: tuple[tuple[str, Any], ...] = ()  # other engine args, e.g. (("fast_vae_decoder", False),)


# Per-engine speed options, measured against the baseline by switching them off.
OPTION_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "music": ("diffusers_vae_decoder", {"fast_vae_decoder": False}),  # deployments/oobleck.py off
    "cover": ("contiguous_layout", {"channels_last": False}),
}


def variants(part: str, rt: Runtime) -> tuple[list[Variant], dict[str, str]]:
    """The engine options to measure, and the ones skipped (with why)."""
    prod = PROD_DTYPES[part]
    other = "float16" if prod == "bfloat16" else "bfloat16"
    skipped: dict[str, str] = {}
    if rt.cuda:
        vs = [Variant(prod, prod, baseline=True), Variant(other, other),
              Variant(f"{prod}+compile", prod, torch_compile=True),
              Variant(f"{prod}+cpu_offload", prod, cpu_offload=True)]
    else:
        vs = [Variant("float32", "float32", baseline=True), Variant("bfloat16", "bfloat16")]
        why = "CUDA only: the engines apply torch_compile / cpu_offload on CUDA replicas only"
        skipped = {f"{prod}+compile": why, f"{prod}+cpu_offload": why,
                   "float16": "not measured on CPU (fp16 kernels are slow or missing there)"}
    if part in OPTION_VARIANTS:
        base = next(v for v in vs if v.baseline)
        suffix, kw = OPTION_VARIANTS[part]
        vs.append(Variant(f"{base.dtype}+{suffix}", base.dtype, engine=tuple(kw.items())))
    if rt.options == "baseline":
        skipped.update({v.name: "--options baseline" for v in vs if not v.baseline})
        vs = [v for v in vs if v.baseline]
    return vs, skipped


def music_request(wl: Workload, duration_s: float | None = None, steps: int | None = None):
    from deployments.music import MusicRequest

    return MusicRequest(tags=SONG_TAGS, lyrics=SONG_LYRICS, duration_s=duration_s or wl.song_s,
                        steps=steps or wl.music_steps, seed=0, audio_format="wav")


def music_args(path: str, rt: Runtime, v: Variant):
    from deployments.config import MusicArgs

    return MusicArgs(model=path, dtype=v.dtype, torch_compile=v.torch_compile, cpu_offload=v.cpu_offload,
                     **rt.engine_common(), **dict(v.engine))


def bench_music_variant(path: str, rt: Runtime, wl: Workload, gpu: Gpu, v: Variant) -> dict[str, Any]:
    from deployments.music import MusicEngine

    gpu.clear()
    engine, load_s = timed(gpu, lambda: MusicEngine(music_args(path, rt, v)))
    mem_load = gpu.snapshot()
    weights = gpu.allocated()
    req = music_request(wl)
    try:
        gpu.reset_peak()
        first, first_s = timed(gpu, lambda: engine.generate(req))  # warm-up; includes compilation
        runs = [timed(gpu, lambda: engine.generate(req)) for _ in range(wl.repeats)]
        mem_run = gpu.snapshot()
    finally:
        del engine
        _free_memory()
        if v.torch_compile:
            _torch()._dynamo.reset()
    render = [r.model_s for r, _ in runs]
    st = _stats(render)
    return {
        "dtype": v.dtype, "torch_compile": v.torch_compile, "cpu_offload": v.cpu_offload, "baseline": v.baseline,
        "engine_options": dict(v.engine), "load_s": load_s, "weights_bytes": weights,
        "first_call_s": first.model_s, "first_call_overhead_s": first.model_s - st["best_s"],
        "compile_s": (first.model_s - st["best_s"]) if v.torch_compile else None,
        "render_s": st["best_s"], "render_s_median": st["median_s"], "render_samples_s": st["samples_s"],
        "rtf": st["best_s"] / wl.song_s, "rtf_median": st["median_s"] / wl.song_s,
        "encode_s": min(r.encode_s for r, _ in runs), "generate_s": min(s for _, s in runs),
        "audio": {"sample_rate": first.sample_rate, "channels": first.channels, "duration_s": first.duration_s,
                  "steps": first.steps},
        "memory_load": mem_load, "memory_run": mem_run, "peak_bytes": _peak(mem_load, mem_run),
    }


def bench_variants(kind: str, bench_variant, path: str, rt: Runtime, wl: Workload, gpu: Gpu,
                   head: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run every engine-option variant of one model; returns the report and the baseline's entry."""
    vs, skipped = variants(kind, rt)
    out: dict[str, Any] = {**head, "variants": {}, "skipped": skipped}
    for v in vs:
        print(f"[{kind}] {v.name} ...", flush=True)
        try:
            out["variants"][v.name] = bench_variant(path, rt, wl, gpu, v)
        except Exception as exc:  # noqa: BLE001 - one failing option (an OOM...) must not hide the others
            out["variants"][v.name] = _error(exc)
        _free_memory()  # after the except block: the exception no longer pins the failed run's tensors
    out["baseline"] = next((v.name for v in vs if v.baseline), None)
    return out, out["variants"].get(out["baseline"], {})


def bench_music(path: str, rt: Runtime, wl: Workload, gpu: Gpu) -> dict[str, Any]:
    out, b = bench_variants("music", bench_music_variant, path, rt, wl, gpu,
                            {"model": MUSIC_SPECS[rt.music_variant], "song_s": wl.song_s, "steps": wl.music_steps})
    out["rtf"] = b.get("rtf")
    out["peak_bytes"] = b.get("peak_bytes")
    return out


# --------------------------------------------------------------------------- cover


def cover_args(path: str, rt: Runtime, wl: Workload, v: Variant):
    from deployments.config import CoverArgs

    return CoverArgs(model=path, dtype=v.dtype, torch_compile=v.torch_compile, cpu_offload=v.cpu_offload,
                     steps=wl.cover_steps, size=wl.cover_size, max_batch_size=max(wl.cover_batches),
                     **rt.engine_common(), **dict(v.engine))


def bench_cover_variant(path: str, rt: Runtime, wl: Workload, gpu: Gpu, v: Variant) -> dict[str, Any]:
    from deployments.cover import CoverEngine, CoverRequest, cover_prompt

    gpu.clear()
    engine, load_s = timed(gpu, lambda: CoverEngine(cover_args(path, rt, wl, v)))
    mem_load = gpu.snapshot()
    weights = gpu.allocated()
    prompt = cover_prompt(SONG_TAGS, "Midnight Ride")
    batches: dict[str, Any] = {}
    try:
        gpu.reset_peak()
        for b in wl.cover_batches:
            reqs = [CoverRequest(prompt=prompt, seed=i) for i in range(b)]
            first, first_s = timed(gpu, lambda: engine.generate_batch(reqs))  # warm-up (+ compile for this shape)
            runs = [timed(gpu, lambda: engine.generate_batch(reqs)) for _ in range(wl.repeats)]
            model = [r[0].model_s for r, _ in runs]
            st = _stats(model)
            batches[str(b)] = {
                "batch": b, "first_call_s": first[0].model_s,
                "compile_s": (first[0].model_s - st["best_s"]) if v.torch_compile else None,
                "latency_s": st["best_s"], "latency_s_median": st["median_s"], "samples_s": st["samples_s"],
                "images_per_s": b / st["best_s"], "with_png_s": min(s for _, s in runs),
                "size": [first[0].width, first[0].height], "steps": first[0].steps,
            }
        mem_run = gpu.snapshot()
    finally:
        del engine
        _free_memory()
        if v.torch_compile:
            _torch()._dynamo.reset()
    return {"dtype": v.dtype, "torch_compile": v.torch_compile, "cpu_offload": v.cpu_offload, "baseline": v.baseline,
            "engine_options": dict(v.engine), "load_s": load_s, "weights_bytes": weights, "batches": batches,
            "memory_load": mem_load, "memory_run": mem_run, "peak_bytes": _peak(mem_load, mem_run)}


def bench_cover(path: str, rt: Runtime, wl: Workload, gpu: Gpu) -> dict[str, Any]:
    out, b = bench_variants("cover", bench_cover_variant, path, rt, wl, gpu,
                            {"model": "sdxl-turbo", "size": wl.cover_size, "steps": wl.cover_steps})
    out["latency_s"] = {k: x["latency_s"] for k, x in b.get("batches", {}).items()}
    out["peak_bytes"] = b.get("peak_bytes")
    return out


# --------------------------------------------------------------------------- all three resident


def run_song_through_engines(
    llm, music, cover, wl: Workload, gpu: Gpu, num_threads: int | None = None
) -> dict[str, Any]:
    """One song in the app's order (serve_app/composer.py), in this process, no Ray:
    tags ∥ lyrics (one batched generate) → music ∥ cover ∥ title+categories.

    The music renders the benchmark's fixed lyric (random weights write gibberish of the right length).
    """
    from deployments.cover import CoverRequest, cover_prompt
    from deployments.llm import lyrics_completion, meta_completion, tags_completion

    a = llm.args
    t0 = time.perf_counter()
    words_budget = max(a.max_new_tokens_tags, a.max_new_tokens_lyrics)
    with forced_tokens(llm, words_budget):
        _, words_s = timed(gpu, lambda: llm.complete_batch(
            [tags_completion(a, SONG_DESCRIPTION, False), lyrics_completion(a, SONG_DESCRIPTION)]))
    spans: dict[str, float] = {}
    errors: list[BaseException] = []

    def job(name: str, fn: Callable[[], Any]) -> threading.Thread:
        def target():
            if num_threads:  # the engines' num_threads, for these worker threads too
                _torch().set_num_threads(num_threads)
            s = time.perf_counter()
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)
            spans[name] = time.perf_counter() - s

        th = threading.Thread(target=target, name=f"song-{name}")
        th.start()
        return th

    def meta():
        with forced_tokens(llm, a.max_new_tokens_meta):
            llm.complete_batch([meta_completion(a, SONG_DESCRIPTION, SONG_TAGS.split(", "))])

    t1 = time.perf_counter()
    workers = [
        job("music", lambda: music.generate(music_request(wl))),
        job("cover", lambda: cover.generate_batch([CoverRequest(prompt=cover_prompt(SONG_TAGS), seed=0)])),
        job("meta", meta),
    ]
    for th in workers:
        th.join()
    gpu.sync()
    if errors:
        raise errors[0]
    fan_s = time.perf_counter() - t1
    return {"words_s": words_s, "words_tokens": words_budget, "music_s": spans["music"], "cover_s": spans["cover"],
            "meta_s": spans["meta"], "fan_out_s": fan_s, "total_s": time.perf_counter() - t0,
            "order": "tags+lyrics (batched) -> music || cover || title+categories (threads, one process, no Ray)"}


def bench_resident(dirs: dict[str, Any], rt: Runtime, wl: Workload, gpu: Gpu) -> dict[str, Any]:
    from deployments.cover import CoverEngine
    from deployments.llm import LLMEngine
    from deployments.music import MusicEngine

    mv, _ = variants("music", rt)
    cv, _ = variants("cover", rt)
    mbase = next(v for v in mv if v.baseline)
    cbase = next(v for v in cv if v.baseline)
    gpu.clear()
    engines: dict[str, Any] = {}
    loaded: dict[str, Any] = {}
    try:
        before = gpu.allocated() or 0
        for name, make in (
            ("llm", lambda: LLMEngine(llm_args(dirs["llm"]["path"], rt, wl, _llm_dtype(rt)))),
            ("music", lambda: MusicEngine(music_args(dirs["music"]["path"], rt, mbase))),
            ("cover", lambda: CoverEngine(cover_args(dirs["cover"]["path"], rt, wl, cbase))),
        ):
            engines[name], s = timed(gpu, make)
            now = gpu.allocated()
            loaded[name] = {"load_s": s, "weights_bytes": None if now is None else now - before}
            before = now or 0
        after_load = gpu.snapshot()
        # Warm-up: a short song, so the timed one measures steady state.
        short = Workload(llm_new_tokens=8, song_s=min(10.0, wl.song_s), cover_size=wl.cover_size, repeats=1,
                         music_steps=1)
        with _llm_budgets(engines["llm"], 8):
            run_song_through_engines(engines["llm"], engines["music"], engines["cover"], short, gpu, rt.threads)
        gpu.reset_peak()
        song = run_song_through_engines(engines["llm"], engines["music"], engines["cover"], wl, gpu, rt.threads)
        after_run = gpu.snapshot()
    finally:
        engines.clear()
        _free_memory()
    return {
        "engines": loaded, "dtypes": {"llm": _llm_dtype(rt), "music": mbase.dtype, "cover": cbase.dtype},
        "allocated_after_load_bytes": after_load.get("allocated_bytes"),
        "memory_after_load": after_load, "memory_after_run": after_run,
        "peak_bytes": _peak(after_load, after_run), "peak_reserved_bytes": after_run.get("peak_reserved_bytes"),
        "song_engines": song,
    }


@contextlib.contextmanager
def _llm_budgets(engine, n: int):
    """Shrink every LLM budget (warm-up songs)."""
    a = engine.args
    old = (a.max_new_tokens_tags, a.max_new_tokens_lyrics, a.max_new_tokens_meta)
    engine.args = a.model_copy(update={"max_new_tokens_tags": n, "max_new_tokens_lyrics": max(16, n),
                                       "max_new_tokens_meta": n})
    try:
        yield
    finally:
        engine.args = a.model_copy(update=dict(zip(("max_new_tokens_tags", "max_new_tokens_lyrics",
                                                    "max_new_tokens_meta"), old)))


# --------------------------------------------------------------------------- memory budget


def prod_shares() -> dict[str, float]:
    import yaml

    doc = yaml.safe_load(PROD_CONFIG.read_text())
    args = doc["applications"][0]["args"]
    return {p: float(args[p]["deployment"]["num_gpus"]) for p in ("llm", "music", "cover")}


def budget_check(results: dict[str, Any], rt: Runtime, estimate: dict[str, int]) -> dict[str, Any]:
    shares = prod_shares()
    gpu_bytes = rt.gpu_gb * GB
    measured = {
        "llm": (results.get("llm") or {}).get("peak_bytes"),
        "music": (results.get("music") or {}).get("peak_bytes"),
        "cover": (results.get("cover") or {}).get("peak_bytes"),
    }
    rows = {}
    for part, share in shares.items():
        budget = share * gpu_bytes
        peak = measured[part] if rt.size == "full" else None
        rows[part] = {
            "num_gpus": share, "budget_bytes": int(budget),
            "weights_estimate_bytes": estimate[part], "weights_fit": estimate[part] <= budget,
            "measured_peak_bytes": peak, "fits": None if peak is None else peak <= budget,
            "headroom_bytes": None if peak is None else int(budget - peak),
        }
    total_share = sum(shares.values())
    res = results.get("resident") or {}
    peak_all = res.get("peak_bytes") if rt.size == "full" else None
    rows["all"] = {
        "num_gpus": total_share, "budget_bytes": int(total_share * gpu_bytes),
        "weights_estimate_bytes": sum(estimate.values()),
        "weights_fit": sum(estimate.values()) <= total_share * gpu_bytes,
        "measured_peak_bytes": peak_all, "fits": None if peak_all is None else peak_all <= total_share * gpu_bytes,
        "headroom_bytes": None if peak_all is None else int(total_share * gpu_bytes - peak_all),
    }
    note = (f"shares are configs/prod.yaml's num_gpus of a {rt.gpu_gb:g} GB GPU; peaks are torch allocations "
            "(max_memory_allocated) of one process, without the ~0.5 GB CUDA context each replica adds")
    if rt.size != "full":
        note += "; reduced size: only the full-size weight estimates are checked"
    return {"gpu_gb": rt.gpu_gb, "shares": shares, "rows": rows, "note": note}


# --------------------------------------------------------------------------- end to end (Ray Serve)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    torch = _torch()
    num_gpus = torch.cuda.device_count() if rt.cuda else 1  # on CPU: a logical GPU (placement counter only)
    port = _free_port()
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


# --------------------------------------------------------------------------- report


def _git() -> dict[str, Any]:
    def run(*cmd):
        return subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True, timeout=20).stdout.strip()

    try:
        return {"commit": run("rev-parse", "HEAD") or None, "dirty": bool(run("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def _device_info(device) -> dict[str, Any]:
    torch = _torch()
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return {"type": "cuda", "name": p.name, "total_memory_bytes": int(p.total_memory),
                "capability": f"{p.major}.{p.minor}", "count": torch.cuda.device_count(),
                "cpu_count": os.cpu_count()}
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return {"type": "cpu", "name": name, "total_memory_bytes": None, "capability": None, "count": 0,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}


def device_slug(info: dict[str, Any], size: str) -> str:
    base = "cpu" if info["type"] == "cpu" else re.sub(r"[^A-Za-z0-9]+", "-", info["name"]).strip("-")
    return base + ("" if size == "full" else "-reduced")


def _g(b: int | float | None, unit: float = GIB, nd: int = 2) -> str:
    return "-" if b is None else f"{b / unit:.{nd}f}"


def _f(x: float | None, nd: int = 3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def markdown(report: dict[str, Any]) -> str:
    L: list[str] = []
    d, v = report["device"], report["versions"]
    L.append(f"# gpu_full_size: {d['name']} ({report['size']} size)")
    L.append("")
    commit = (report["git"]["commit"] or "?")[:12] + (" (dirty)" if report["git"]["dirty"] else "")
    L.append(f"torch {v['torch']} (CUDA {v['torch_cuda']}), diffusers {v['diffusers']}, transformers "
             f"{v['transformers']}; commit {commit}; {report['date']}")
    L.append("")
    L.append("## Parameter counts (full size, built on the meta device)")
    L.append("")
    L.append("| component | class | params | reference | rel. err | check |")
    L.append("|---|---|---:|---:|---:|---|")
    for key, r in report["param_counts"].items():
        ref = "-" if not r["reference"] else f"{r['reference']:,}"
        err = "-" if r["rel_err"] is None else f"{100 * r['rel_err']:+.2f}%"
        chk = "ok" if r["ok"] else ("FAIL" if r["ok"] is False else "report only")
        L.append(f"| {key} | {r['class']} | {r['params']:,} | {ref} | {err} | {chk} |")
    tr = report["param_counts"].get("music.transformer", {})
    if tr.get("nominal"):
        L.append("")
        L.append(f"ACE-Step DiT: {tr['params'] / 1e9:.3f} B (closed form {tr['formula_params'] / 1e9:.3f} B; "
                 f"nominal {tr['nominal'] / 1e9:.0f} B, {100 * (tr['params'] / tr['nominal'] - 1):+.1f}%).")
    s = report["settings"]
    llm = report["results"].get("llm")
    if llm:
        L.append("")
        L.append(f"## LLM: Qwen2-7B-Instruct architecture, {llm.get('dtype', '?')}, "
                 f"{s['llm_new_tokens']} new tokens, greedy")
        L.append("")
        if "error" in llm:
            L.append(f"ERROR: {llm['error']}")
        else:
            L.append("| batch | tokens | best s | median s | tokens/s (best) | tokens/s (median) |")
            L.append("|---:|---:|---:|---:|---:|---:|")
            for b in llm["batches"].values():
                L.append(f"| {b['batch']} | {b['tokens']} | {_f(b['best_s'])} | {_f(b['median_s'])} | "
                         f"{_f(b['tokens_per_s'], 1)} | {_f(b['tokens_per_s_median'], 1)} |")
            L.append("")
            L.append(f"Seconds are {llm['clock']}.")
            L.append("")
            L.append(f"Batch 8 / batch 1 throughput: **{llm['throughput_ratio']:.2f}x** "
                     f"(median {llm['batch8_over_batch1_median']:.2f}x, wall clock {llm['throughput_ratio_wall']:.2f}x; "
                     f"target >= {LLM_BATCH_TARGET:g}x: {'MET' if llm['meets_target'] else 'NOT MET'}); "
                     f"load {llm['load_s']:.1f} s, weights {_g(llm['weights_bytes'])} GiB, "
                     f"peak {_g(llm['peak_bytes'])} GiB; "
                     f"every row ran its full budget: {llm['all_rows_full_budget']}.")
    mu = report["results"].get("music")
    if mu:
        L.append("")
        L.append(f"## Music: {mu.get('model')}, {s['song_s']:g} s song, {s['music_steps']} steps")
        L.append("")
        if "error" in mu:
            L.append(f"ERROR: {mu['error']}")
        else:
            L.append("| variant | load s | first call s | compile s | render s | RTF | weights GiB | peak GiB |")
            L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
            for name, x in mu["variants"].items():
                if "error" in x:
                    L.append(f"| {name} | ERROR: {x['error'][:80]} | | | | | | |")
                    continue
                tag = " (baseline)" if x["baseline"] else ""
                L.append(f"| {name}{tag} | {_f(x['load_s'], 2)} | {_f(x['first_call_s'], 2)} | "
                         f"{_f(x['compile_s'], 1)} | {_f(x['render_s'])} | {_f(x['rtf'], 4)} | "
                         f"{_g(x['weights_bytes'])} | {_g(x['peak_bytes'])} |")
            for name, why in mu["skipped"].items():
                L.append(f"| {name} | skipped: {why} | | | | | | |")
    co = report["results"].get("cover")
    if co:
        L.append("")
        L.append(f"## Cover: SDXL-Turbo {s['cover_size']}x{s['cover_size']}, {s['cover_steps']} step")
        L.append("")
        if "error" in co:
            L.append(f"ERROR: {co['error']}")
        else:
            L.append("| variant | batch | load s | first call s | compile s | latency s | images/s | weights GiB "
                     "| peak GiB |")
            L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            for name, x in co["variants"].items():
                if "error" in x:
                    L.append(f"| {name} | ERROR: {x['error'][:80]} | | | | | | | |")
                    continue
                for b in x["batches"].values():
                    L.append(f"| {name}{' (baseline)' if x['baseline'] else ''} | {b['batch']} | {_f(x['load_s'], 2)} | "
                             f"{_f(b['first_call_s'])} | {_f(b['compile_s'], 1)} | {_f(b['latency_s'])} | "
                             f"{_f(b['images_per_s'], 2)} | {_g(x['weights_bytes'])} | {_g(x['peak_bytes'])} |")
            for name, why in co["skipped"].items():
                L.append(f"| {name} | skipped: {why} | | | | | | | |")
    res = report["results"].get("resident")
    if res:
        L.append("")
        L.append("## All three resident in one process, one song")
        L.append("")
        if "error" in res:
            L.append(f"ERROR: {res['error']}")
        else:
            sg = res["song_engines"]
            L.append(f"Allocated after loading: {_g(res['allocated_after_load_bytes'])} GiB "
                     f"(llm {_g(res['engines']['llm']['weights_bytes'])}, music {_g(res['engines']['music']['weights_bytes'])}, "
                     f"cover {_g(res['engines']['cover']['weights_bytes'])}); peak while running one song: "
                     f"{_g(res['peak_bytes'])} GiB (reserved {_g(res['peak_reserved_bytes'])} GiB).")
            L.append("")
            L.append(f"Song through the engines ({sg['order']}): words {sg['words_s']:.2f} s, "
                     f"then music {sg['music_s']:.2f} s || cover {sg['cover_s']:.2f} s || meta {sg['meta_s']:.2f} s; "
                     f"critical path total **{sg['total_s']:.2f} s**.")
    bud = report.get("budget")
    if bud:
        L.append("")
        L.append(f"## Memory budget: configs/prod.yaml shares of a {bud['gpu_gb']:g} GB GPU")
        L.append("")
        L.append("| part | num_gpus | budget GB | full-size weights GB | weights fit | measured peak GB | fits |")
        L.append("|---|---:|---:|---:|---|---:|---|")
        for part, r in bud["rows"].items():
            fits = "-" if r["fits"] is None else ("yes" if r["fits"] else "NO")
            L.append(f"| {part} | {r['num_gpus']:.2f} | {_g(r['budget_bytes'], GB, 1)} | {_g(r['weights_estimate_bytes'], GB, 1)} | "
                     f"{'yes' if r['weights_fit'] else 'NO'} | {_g(r['measured_peak_bytes'], GB, 1)} | {fits} |")
        L.append("")
        L.append(bud["note"] + ".")
    e2e = report["results"].get("e2e")
    if e2e:
        L.append("")
        L.append("## End to end through the app")
        L.append("")
        if "error" in e2e:
            L.append(f"ERROR: {e2e['error']}")
        elif e2e.get("skipped"):
            L.append(f"skipped: {e2e['skipped']}")
        else:
            L.append(f"{e2e['mode']}: deploy {e2e['deploy_s']:.1f} s; {e2e['endpoint']} of a {s['song_s']:g} s song: "
                     f"first {e2e['first_request_s']:.2f} s, then **{e2e['request_s']:.2f} s** "
                     f"(RTF end to end {e2e['rtf_end_to_end']:.4f}).")
    tg = report["targets"]
    L.append("")
    L.append("## Targets")
    L.append("")
    for name, t in tg.items():
        state = "-" if t["met"] is None else ("MET" if t["met"] else "NOT MET")
        L.append(f"- {name}: {_f(t['value'], 2)} (target {t['target']}): {state}")
    errs = report.get("errors") or []
    if errs:
        L.append("")
        L.append("## Errors")
        for e in errs:
            L.append(f"- {e}")
    return "\n".join(L) + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/gpu_full_size.py", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=("auto", "full", "reduced"), default="auto",
                   help="full on CUDA, reduced otherwise (auto)")
    p.add_argument("--device", default="auto", help="auto | cuda | cuda:N | cpu")
    p.add_argument("--parts", default=",".join(PARTS),
                   help=f"comma-separated subset of {PARTS}, or none (e.g. with --e2e)")
    p.add_argument("--options", choices=("all", "baseline"), default="all",
                   help="engine options to measure (dtype, compile, offload) or only the production baseline")
    p.add_argument("--music-variant", choices=tuple(MUSIC_SPECS), default="xl-turbo",
                   help="ACE-Step DiT: xl-turbo (configs/prod.yaml's) or the 2B turbo")
    p.add_argument("--e2e", action="store_true",
                   help="also one /generate-with-lyrics through the real app on Ray Serve")
    p.add_argument("--models-dir", type=Path, default=None,
                   help="keep the random-weight model dirs here and reuse them (default: a temp dir, removed)")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default bench/results/gpu_full_size-<device>.json)")
    p.add_argument("--merge", action="store_true",
                   help="keep the results of parts not run now from an existing --out file (split GPU runs)")
    p.add_argument("--threads", type=int, default=None, help="torch threads on CPU (default 1)")
    p.add_argument("--gpu-gb", type=float, default=80.0, help="GPU size the prod.yaml shares refer to (GB)")
    p.add_argument("--repeats", type=int, default=None, help="timed repetitions per measurement")
    p.add_argument("--llm-tokens", type=int, default=None, help="override the LLM budget (400 full / 128 reduced)")
    p.add_argument("--song-seconds", type=float, default=None, help="override the song length (180 full / 10 reduced)")
    p.add_argument("--allow-full-on-cpu", action="store_true", help="run --size full without CUDA (needs >100 GB RAM)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    torch = _torch()
    if ns.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(ns.device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    size = ns.size if ns.size != "auto" else ("full" if device.type == "cuda" else "reduced")
    if size == "full" and device.type != "cuda" and not ns.allow_full_on_cpu:
        print("--size full needs a CUDA device (or --allow-full-on-cpu)", file=sys.stderr)
        return 2
    parts = [p.strip() for p in ns.parts.split(",") if p.strip() and p.strip() != "none"]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        print(f"unknown parts {unknown}; choose from {PARTS}", file=sys.stderr)
        return 2
    threads = None
    if device.type == "cpu":
        threads = ns.threads or 1
        torch.set_num_threads(threads)
    rt = Runtime(size=size, device=device, threads=threads, options=ns.options, music_variant=ns.music_variant,
                 gpu_gb=ns.gpu_gb)
    wl = WORKLOADS[size]
    overrides = {k: v for k, v in {"repeats": ns.repeats, "llm_new_tokens": ns.llm_tokens,
                                    "song_s": ns.song_seconds}.items() if v is not None}
    if overrides:
        wl = Workload(**{**asdict(wl), **overrides})
    gpu = Gpu(device)
    quiet_libraries()
    t_start = time.perf_counter()
    info = _device_info(device)
    report: dict[str, Any] = {
        "schema": SCHEMA_VERSION, "tool": "bench/gpu_full_size.py", "date": _now(), "git": _git(),
        "device": info, "versions": _versions(), "size": size,
        "settings": {**asdict(wl), "music_variant": rt.music_variant, "options": rt.options, "parts": parts,
                     "e2e": ns.e2e, "threads": threads, "gpu_gb": rt.gpu_gb},
        "param_counts": {}, "weights_estimate_bytes": {}, "model_dirs": {}, "results": {}, "errors": [],
    }
    print(f"[bench] {info['name']}: {size} size, parts {parts}{' + e2e' if ns.e2e else ''}", flush=True)

    t0 = time.perf_counter()
    report["param_counts"] = full_size_param_counts(rt.music_variant)
    report["param_count_s"] = time.perf_counter() - t0
    report["weights_estimate_bytes"] = weights_estimate(report["param_counts"])

    llm_spec = load_spec("qwen2-7b-instruct")
    music_spec = load_spec(MUSIC_SPECS[rt.music_variant])
    cover_spec = load_spec("sdxl-turbo")
    ensure_kits([llm_tokenizer_rel(llm_spec, size),
                 f"{music_spec['tokenizer']['kit']}/{music_spec['tokenizer']['subfolder']}",
                 *[f"{cover_spec['tokenizer']['kit']}/{s}" for s in cover_spec["tokenizer"]["subfolders"]]])

    tmp = None
    if ns.models_dir is not None:
        root = ns.models_dir.resolve()
        root.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="songsmith-gpu-bench-")
        root = Path(tmp)
    try:
        try:
            dirs = build_model_dirs(root / size, rt, set(parts) | ({"llm", "music", "cover"} if ns.e2e else set()))
        except Exception as exc:  # noqa: BLE001
            report["errors"].append(f"build: {type(exc).__name__}: {exc}")
            report["results"]["build"] = _error(exc)
            dirs = {}
        # A temp dir's path means nothing once removed; --models-dir paths are kept.
        report["model_dirs"] = {k: {**v, "path": v["path"] if tmp is None else None} for k, v in dirs.items()}
        steps: list[tuple[str, Callable[[], dict[str, Any]]]] = []
        if "llm" in parts and "llm" in dirs:
            steps.append(("llm", lambda: bench_llm(dirs["llm"]["path"], rt, wl, gpu)))
        if "music" in parts and "music" in dirs:
            steps.append(("music", lambda: bench_music(dirs["music"]["path"], rt, wl, gpu)))
        if "cover" in parts and "cover" in dirs:
            steps.append(("cover", lambda: bench_cover(dirs["cover"]["path"], rt, wl, gpu)))
        if "resident" in parts and all(p in dirs for p in ("llm", "music", "cover")):
            steps.append(("resident", lambda: bench_resident(dirs, rt, wl, gpu)))
        for name, fn in steps:
            print(f"[bench] {name} ...", flush=True)
            t0 = time.perf_counter()
            try:
                report["results"][name] = fn()
            except Exception as exc:  # noqa: BLE001 - record and carry on with the other parts
                report["results"][name] = _error(exc)
                report["errors"].append(f"{name}: {type(exc).__name__}: {exc}")
            _free_memory()
            report["results"][name]["phase_s"] = time.perf_counter() - t0
            for vname, x in (report["results"][name].get("variants") or {}).items():
                if "error" in x:
                    report["errors"].append(f"{name}.{vname}: {x['error']}")
        if ns.e2e:
            print("[bench] e2e (Ray Serve) ...", flush=True)
            _free_memory()
            try:
                report["results"]["e2e"] = bench_e2e(dirs, rt, wl, root)
            except Exception as exc:  # noqa: BLE001
                report["results"]["e2e"] = _error(exc)
                report["errors"].append(f"e2e: {type(exc).__name__}: {exc}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    out = ns.out or RESULTS_DIR / f"gpu_full_size-{device_slug(info, size)}.json"
    if ns.merge and out.is_file():
        old = json.loads(out.read_text())
        if old.get("size") == size and old.get("device", {}).get("name") == info["name"]:
            report["merged"] = {}
            for name, res in (old.get("results") or {}).items():
                if name not in report["results"] and not (isinstance(res, dict) and "error" in res):
                    report["results"][name] = res
                    report["merged"][name] = {"date": old.get("date"), "git": old.get("git")}
        else:
            report["errors"].append(f"--merge: {out} is from another device or size; not merged")

    report["budget"] = budget_check(report["results"], rt, report["weights_estimate_bytes"])
    llm = report["results"].get("llm") or {}
    checked = [r for r in report["param_counts"].values() if r["checked"]]
    counts_ok = all(r["ok"] for r in checked)
    report["targets"] = {
        "llm_batch8_over_batch1": {"target": LLM_BATCH_TARGET, "value": llm.get("throughput_ratio"),
                                   "met": llm.get("meets_target")},
        "param_counts_within_2pct": {"target": 0.02, "value": max((abs(r["rel_err"]) for r in checked), default=None),
                                     "met": counts_ok},
    }
    if not counts_ok:
        report["errors"].append("a full-size parameter count is more than 2% off its published size")
    report["wall_s"] = time.perf_counter() - t_start

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    md = markdown(report)
    print(md, flush=True)
    print(f"[bench] wrote {out} in {report['wall_s']:.1f} s", flush=True)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
