"""Torch runtime choices shared by the engines: device, dtype, threads, and weight lookup errors."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from deployments.config import EngineArgs


class ModelNotAvailable(RuntimeError):
    """Weights for a configured model could not be found (offline, or a wrong id or path)."""


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: torch.dtype


def resolve_runtime(args: EngineArgs, *, half: torch.dtype = torch.bfloat16) -> Runtime:
    """Pick device and dtype; `half` is the engine's preferred CUDA dtype (SDXL's VAE wants fp16)."""
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if device.type == "cpu" and args.onednn_cache_capacity is not None:
        # Read when oneDNN makes its first primitive: this engine's __init__ runs before any op.
        os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = str(args.onednn_cache_capacity)
    if args.dtype == "auto":
        dtype = half if device.type == "cuda" else torch.float32
    else:
        dtype = getattr(torch, args.dtype)
    return Runtime(device=device, dtype=dtype)


def model_source(args: EngineArgs) -> tuple[str, dict]:
    """Return the path/id to load and extra `from_pretrained` kwargs; fail early on a missing local dir."""
    kwargs: dict = {}
    looks_local = args.model.startswith(("/", "./", "../")) or Path(args.model).exists()
    if looks_local:
        if not Path(args.model).is_dir():
            raise ModelNotAvailable(
                f"model directory {args.model!r} does not exist; run `make setup` to build the local kits"
            )
        return str(Path(args.model).resolve()), kwargs
    if args.local_files_only or os.environ.get("HF_HUB_OFFLINE") == "1":
        kwargs["local_files_only"] = True
    return args.model, kwargs


def load_error(args: EngineArgs, exc: Exception) -> ModelNotAvailable:
    """Turn a hub/cache failure into an actionable message (no tokens or URLs with secrets)."""
    hint = (
        "it is not in the local Hugging Face cache; run `python -m deployments.weights download --config "
        "configs/prod.yaml` on a "
        "machine with network access (or mount the cache volume) before starting offline"
    )
    return ModelNotAvailable(f"could not load model {args.model!r}: {hint} ({type(exc).__name__})")


def from_pretrained(loader, args: EngineArgs, **extra):
    """`loader(source, **extra)` (a `from_pretrained`) for the configured model, offline-aware, with
    a missing model turned into ModelNotAvailable: the one way every engine reads its weights."""
    source, kwargs = model_source(args)
    try:
        return loader(source, **extra, **kwargs)
    except OSError as exc:
        raise load_error(args, exc) from exc


def seed_generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device="cpu" if device.type == "mps" else device).manual_seed(seed)


def load_diffusers_pipeline(pipeline_cls, args: EngineArgs, runtime: Runtime, *, compile_attr: str, **extra):
    """from_pretrained + placement (device or model CPU offload) + optional torch.compile of the
    pipeline's main network (`compile_attr`: "transformer", "unet"), shared by both diffusers engines."""
    pipe = from_pretrained(pipeline_cls.from_pretrained, args, dtype=runtime.dtype, **extra)
    if args.cpu_offload and runtime.device.type == "cuda":
        pipe.enable_model_cpu_offload(device=runtime.device)
    else:
        pipe.to(runtime.device)
    if args.torch_compile and runtime.device.type == "cuda":
        setattr(pipe, compile_attr, torch.compile(getattr(pipe, compile_attr)))
    pipe.set_progress_bar_config(disable=True)
    return pipe
