"""Full-size parameter counts (modules built on the meta device) against the published sizes."""

from __future__ import annotations

from typing import Any

from bench.gpu.configs import cover_configs, dit_params_formula, llm_config, load_spec, music_configs
from bench.gpu.measure import lazy_torch
from bench.gpu.modules import count_params, make_cover_modules, make_llm, make_music_modules
from bench.gpu.settings import DTYPE_BYTES, MUSIC_SPECS


def full_size_param_counts(music_variant: str) -> dict[str, Any]:
    """Build every full-size module on the meta device and check it against the published sizes."""
    torch = lazy_torch()
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
