"""Engine-option variants (dtype, torch.compile, CPU offload, each engine's own speed option) and the
loop that measures every variant of one model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.gpu.measure import Gpu, error_entry, free_memory, lazy_torch
from bench.gpu.settings import PROD_DTYPES, Runtime, Workload


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


def release(v: Variant) -> None:
    """After one variant's engine is deleted: free its memory and forget its compiled graphs."""
    free_memory()
    if v.torch_compile:
        lazy_torch()._dynamo.reset()


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
            out["variants"][v.name] = error_entry(exc)
        free_memory()  # after the except block: the exception no longer pins the failed run's tensors
    out["baseline"] = next((v.name for v in vs if v.baseline), None)
    return out, out["variants"].get(out["baseline"], {})
