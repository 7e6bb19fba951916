"""The memory budget: configs/prod.yaml's `num_gpus` shares of one GPU against weights and peaks."""

from __future__ import annotations

from typing import Any

from bench.gpu.settings import GB, PROD_CONFIG, Runtime


def prod_shares() -> dict[str, float]:
    import yaml

    doc = yaml.safe_load(PROD_CONFIG.read_text())
    args = doc["applications"][0]["args"]
    return {p: float(args[p]["deployment"]["num_gpus"]) for p in ("llm", "music", "cover")}


def budget_check(results: dict[str, Any], rt: Runtime, estimate: dict[str, int]) -> dict[str, Any]:
    shares = prod_shares()
    gpu_bytes = rt.gpu_gb * GB
    r = {k: (v if isinstance(v, dict) else {}) for k, v in results.items()}
    ml = ((r.get("music_lengths") or {}).get("lengths") or {})
    tiled = [x["tiled"].get("peak_bytes") for x in ml.values() if isinstance(x.get("tiled"), dict)]
    measured = {  # the per-engine parts, else the default run's: transformers engine, tiled songs, fp16-fix VAE
        "llm": (r.get("llm") or {}).get("peak_bytes")
        or (((r.get("llm_engines") or {}).get("engines") or {}).get("transformers") or {}).get("peak_bytes"),
        "music": (r.get("music") or {}).get("peak_bytes") or max((t for t in tiled if t), default=None),
        "cover": (r.get("cover") or {}).get("peak_bytes") or (r.get("cover_vae") or {}).get("peak_bytes"),
    }
    procs = (((r.get("e2e") or {}).get("processes") or {}).get("per_deployment") or {})
    by_part = {"llm": "LLM", "music": "Music", "cover": "Cover"}
    rows = {}
    for part, share in shares.items():
        budget = share * gpu_bytes
        peak = measured[part] if rt.size == "full" else None
        rows[part] = {
            "num_gpus": share, "budget_bytes": int(budget),
            "weights_estimate_bytes": estimate[part], "weights_fit": estimate[part] <= budget,
            "measured_peak_bytes": peak, "fits": None if peak is None else peak <= budget,
            "headroom_bytes": None if peak is None else int(budget - peak),
            "process_gpu_used_peak_bytes": (procs.get(by_part[part]) or {}).get("gpu_used_peak_bytes"),
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
