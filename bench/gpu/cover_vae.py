"""Cover latency with the pipeline's own (stock) SDXL VAE vs the fp16-fix VAE (`CoverArgs.vae`).

With random weights nothing is downloaded: the fp16-fix VAE is a STAND-IN, an `AutoencoderKL` of
the same config as SDXL's VAE (madebyollin/sdxl-vae-fp16-fix has SDXL's architecture) with
`force_upcast: false`, saved beside the cover model (bench/gpu/model_dirs.py) and loaded through the
engine's own `vae:` path (deployments/cover.py `_load_vae`). Its numbers are the fp16-fix VAE's
cost (fp16 decode, no fp32 upcast), not its image quality. The stock VAE's config says
`force_upcast: true`, so in fp16 the SDXL pipeline upcasts it to fp32 for every decode; in float32
(CPU) neither upcasts and the two should match.
"""

from __future__ import annotations

from typing import Any

from bench.gpu.cover import bench_cover_variant
from bench.gpu.measure import Gpu, error_entry, free_memory
from bench.gpu.settings import PROD_DTYPES, Runtime, Workload
from bench.gpu.variants import Variant

STANDIN = ("stand-in for madebyollin/sdxl-vae-fp16-fix: a random-weight AutoencoderKL of SDXL's VAE config "
           "with force_upcast false (same architecture, so the same cost; not its weights)")


def bench_cover_vae(cover_path: str, vae_path: str, rt: Runtime, wl: Workload, gpu: Gpu) -> dict[str, Any]:
    import dataclasses
    import json
    from pathlib import Path

    wl = dataclasses.replace(wl, repeats=min(wl.repeats, 3))
    dtype = PROD_DTYPES["cover"] if rt.cuda else "float32"
    stock_cfg = json.loads((Path(cover_path) / "vae" / "config.json").read_text())
    fix_cfg = json.loads((Path(vae_path) / "config.json").read_text())
    cases = {
        "stock": (Variant("stock", dtype, baseline=False), bool(stock_cfg.get("force_upcast"))),
        "fp16_fix": (Variant("fp16_fix", dtype, baseline=True, engine=(("vae", vae_path),)), False),
    }
    out: dict[str, Any] = {"model": "sdxl-turbo", "dtype": dtype, "size": wl.cover_size, "steps": wl.cover_steps,
                           "fp16_fix_vae": STANDIN, "variants": {}}
    for name, (v, force_upcast) in cases.items():
        print(f"[cover_vae] {name} ...", flush=True)
        try:
            x = bench_cover_variant(cover_path, rt, wl, gpu, v)
            x["force_upcast"] = force_upcast if name == "stock" else bool(fix_cfg.get("force_upcast"))
            x["upcasts_to_fp32"] = dtype == "float16" and x["force_upcast"]
            out["variants"][name] = x
        except Exception as exc:  # noqa: BLE001
            out["variants"][name] = error_entry(exc)
        free_memory()
    lat = {n: {k: b["latency_s"] for k, b in x.get("batches", {}).items()} for n, x in out["variants"].items()}
    out["latency_s"] = lat
    s, f = lat.get("stock", {}), lat.get("fp16_fix", {})
    out["stock_over_fp16_fix"] = {b: s[b] / f[b] for b in s if b in f and f[b] > 0}
    out["peak_bytes"] = (out["variants"].get("fp16_fix") or {}).get("peak_bytes")
    return out
