"""Random-weight model folders, saved like the real checkpoints, with the kits' tokenizers."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from bench.gpu.configs import chatml_ids, component_config, cover_configs, llm_config, llm_tokenizer_rel, load_spec, music_configs
from bench.gpu.measure import free_memory, lazy_torch, utc_now, versions
from bench.gpu.modules import make_cover_modules, make_llm, make_music_modules
from bench.gpu.settings import GIB, MODELS_DIR, MUSIC_SPECS, Runtime


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


def _stamp(part: str, size: str, spec: dict[str, Any], tokenizer_rels: list[str], dtype: str) -> str:
    tok_stamps = []
    for rel in tokenizer_rels:
        kit_json = kit_dir(rel.split("/")[0]) / "kit.json"
        tok_stamps.append(json.loads(kit_json.read_text()).get("spec_hash") if kit_json.is_file() else rel)
    v = versions()
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
    torch = lazy_torch()
    build_device = rt.device if (rt.cuda and rt.size == "full") else torch.device("cpu")
    out: dict[str, Any] = {}
    want = set(parts)
    if want & {"resident", "e2e"}:
        want |= {"llm", "music", "cover"}
    if "llm_engines" in want:
        want.add("llm")
    if want & {"music_lengths", "dit"}:
        want.add("music")
    if "cover_vae" in want:
        want |= {"cover", "cover_vae"}

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
        free_memory()
        stamp_file.write_text(json.dumps({"stamp": stamp, "size": rt.size, "built_at": utc_now()}))
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
            end_id, im_end_id = chatml_ids(tok)
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

    if "cover_vae" in want:
        spec = load_spec("sdxl-turbo")

        def build_cover_vae(path: Path) -> None:
            """Stand-in for madebyollin/sdxl-vae-fp16-fix: SDXL's VAE config, force_upcast false."""
            from diffusers import AutoencoderKL

            cfg = {**component_config(spec["components"]["vae"], rt.size), "force_upcast": False}
            torch.manual_seed(77)
            with torch.device(build_device):
                vae = AutoencoderKL(**cfg).to(save_dtype(spec["dtype"])).eval()
            vae.save_pretrained(path)
            del vae

        reuse_or_build("cover_vae", {**spec, "stand_in": "sdxl-vae-fp16-fix"}, [], spec["dtype"], build_cover_vae)
    return out
