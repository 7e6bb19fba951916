"""Torch runtime choices shared by the engines: device, dtype, threads, the GPU share, and weight lookup errors.

On a GPU, Ray's `num_gpus` fractions are scheduling counters only: nothing stops one replica from
growing into the memory a neighbour on the same GPU was promised. `resolve_runtime` therefore caps
each CUDA process's caching allocator at the share Ray assigned it (read from the replica's own
runtime context, so it is always the share Ray scheduled, whatever the config or a Serve override
said), minus what the process holds outside the allocator (its CUDA context). And a replica that
Ray gave a GPU but whose torch cannot see CUDA refuses to start instead of loading on the CPU.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from deployments.config import EngineArgs, is_local_model


class ModelNotAvailable(RuntimeError):
    """Weights for a configured model could not be found (offline, or a wrong id or path)."""


class GPUUnavailable(RuntimeError):
    """The replica was given (or configured for) a GPU that torch cannot use: it must not start on the CPU."""


# What one CUDA process holds outside torch's caching allocator, so outside its memory-fraction cap:
# the CUDA context with its loaded kernels (~0.5 GiB on an H100 with CUDA 12's lazy loading) and the
# cuBLAS/cuDNN handles. A replica's allocator gets its share minus this, so the shares Ray packs
# onto one GPU (at most 1.0 together) fit it with every context included.
CUDA_CONTEXT_RESERVE_BYTES = 1 << 30
# After a render, cached-but-unused allocator blocks above this go back to the driver (empty_cache):
# a long song's or a big batch's activations would otherwise stay reserved by this replica, invisible
# to the neighbours sharing its GPU (nvidia-smi, and the next replica Ray places there, see them used).
EMPTY_CACHE_ABOVE_BYTES = 512 << 20

NVIDIA_DRIVER_VERSION_FILE = Path("/proc/driver/nvidia/version")


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: torch.dtype
    gpu_share: float | None = None  # the num_gpus Ray assigned this process (None: not a Ray worker, or no GPU)
    memory_fraction: float | None = None  # the allocator cap set on `device` (None: uncapped)


def ray_gpu_assignment() -> tuple[list[str], float]:
    """(GPU ids, GPU share) that Ray assigned to this process; ([], 0.0) outside a Ray worker.

    The share is the deployment's `num_gpus` as Ray scheduled it (e.g. 0.25): `get_assigned_resources()`
    reports it for actors, fractions included, so no config has to repeat it.
    """
    try:
        import ray
    except ImportError:  # engines also run without Ray (benchmarks, scripts)
        return [], 0.0
    if not ray.is_initialized():
        return [], 0.0
    ctx = ray.get_runtime_context()
    try:
        ids = [str(i) for i in (ctx.get_accelerator_ids().get("GPU") or [])]
        share = float(ctx.get_assigned_resources().get("GPU", 0.0))
    except AssertionError:  # a driver process, not a worker: Ray assigned it nothing
        return [], 0.0
    return ids, share


def nvidia_driver_version() -> str | None:
    """The loaded NVIDIA kernel driver's version, from /proc (no subprocess, no CUDA call); None if none."""
    try:
        text = NVIDIA_DRIVER_VERSION_FILE.read_text()
    except OSError:
        return None
    m = re.search(r"Kernel Module\s+(?:for\s+\S+\s+)?(\d+(?:\.\d+)+)", text) or re.search(r"\b(\d{3,}\.\d+(?:\.\d+)?)\b", text)
    return m.group(1) if m else text.strip().splitlines()[0][:120]


def cuda_unavailable_reason() -> str:
    """Why torch.cuda.is_available() is False here, as far as can be told without CUDA."""
    build = torch.version.cuda
    driver = nvidia_driver_version()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if build is None:
        why = (
            f"torch {torch.__version__} is a CPU-only build (torch.version.cuda is None): install the CUDA wheel "
            "on GPU nodes (PyPI's Linux x86_64 torch, or --index-url https://download.pytorch.org/whl/cuXXX)"
        )
    elif driver is None:
        why = (
            f"torch {torch.__version__} is built for CUDA {build}, but no NVIDIA driver is loaded "
            f"({NVIDIA_DRIVER_VERSION_FILE} is missing): check `nvidia-smi` on the node"
        )
    else:
        why = (
            f"torch {torch.__version__} is built for CUDA {build} and the NVIDIA driver is {driver}: the driver is "
            f"likely older than CUDA {build} needs (or the GPU is unusable; check `nvidia-smi`): upgrade the "
            "driver or install a torch wheel for an older CUDA"
        )
    return f"{why}; CUDA_VISIBLE_DEVICES={visible!r}"


def limit_gpu_memory(device: torch.device, share: float) -> float | None:
    """Cap this process's caching allocator at its GPU share (context reserve excluded); the fraction set.

    Nothing is capped for a whole GPU or more (one process per GPU: nothing to share) or no share.
    """
    if not 0 < share < 1:
        return None
    total = torch.cuda.get_device_properties(device).total_memory
    fraction = share - CUDA_CONTEXT_RESERVE_BYTES / total
    if fraction <= 0:
        raise GPUUnavailable(
            f"num_gpus {share:g} of a {total / 2**30:.1f} GiB GPU leaves nothing after the "
            f"{CUDA_CONTEXT_RESERVE_BYTES / 2**30:g} GiB CUDA context: give this deployment a larger num_gpus"
        )
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    return fraction


def return_cached_gpu_memory(device: torch.device, above: int = EMPTY_CACHE_ABOVE_BYTES) -> bool:
    """Give the allocator's unused cached blocks back to the driver when they exceed `above` bytes."""
    if device.type != "cuda":
        return False
    if torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device) <= above:
        return False
    torch.cuda.empty_cache()
    return True


def resolve_runtime(args: EngineArgs, *, half: torch.dtype = torch.bfloat16) -> Runtime:
    """Pick device and dtype, and cap GPU memory at Ray's share; `half` is the engine's preferred CUDA dtype.

    Raises GPUUnavailable when Ray assigned this replica a GPU (or the config asks for CUDA) but torch
    cannot see CUDA: a 7 B model silently loading on the CPU would "work" at a hundredth of the speed.
    """
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    gpu_ids, share = ray_gpu_assignment()
    cuda = torch.cuda.is_available()
    if args.device == "auto":
        if not cuda and gpu_ids:
            raise GPUUnavailable(
                f"Ray assigned GPU ids {gpu_ids} to this replica but torch.cuda.is_available() is False: "
                f"{cuda_unavailable_reason()}. Refusing to load {args.model} on the CPU."
            )
        device = torch.device("cuda" if cuda else "cpu")
    else:
        device = torch.device(args.device)
        if device.type == "cuda" and not cuda:
            given = f"Ray assigned GPU ids {gpu_ids}" if gpu_ids else "Ray assigned no GPU"
            raise GPUUnavailable(
                f"device {args.device!r} is configured ({given}) but torch.cuda.is_available() is False: "
                f"{cuda_unavailable_reason()}."
            )
    if device.type == "cpu" and args.onednn_cache_capacity is not None:
        # Read when oneDNN makes its first primitive: this engine's __init__ runs before any op.
        os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = str(args.onednn_cache_capacity)
    if args.dtype == "auto":
        dtype = half if device.type == "cuda" else torch.float32
    else:
        dtype = getattr(torch, args.dtype)
    fraction = limit_gpu_memory(device, share) if device.type == "cuda" else None
    return Runtime(device=device, dtype=dtype, gpu_share=share or None, memory_fraction=fraction)


def model_source(args: EngineArgs) -> tuple[str, dict]:
    """Return the path/id to load and extra `from_pretrained` kwargs; fail early on a missing local dir."""
    kwargs: dict = {}
    if is_local_model(args.model):
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


def load_diffusers_pipeline(
    pipeline_cls, args: EngineArgs, runtime: Runtime, *, compile_attr: str | tuple[str, ...], **extra
):
    """from_pretrained + placement (device or model CPU offload) + optional torch.compile of the
    pipeline's main network (`compile_attr`: "transformer", "unet", or candidates in order: the first
    one the loaded pipeline has), shared by both diffusers engines."""
    pipe = from_pretrained(pipeline_cls.from_pretrained, args, dtype=runtime.dtype, **extra)
    if args.cpu_offload and runtime.device.type == "cuda":
        pipe.enable_model_cpu_offload(device=runtime.device)
    else:
        pipe.to(runtime.device)
    if args.torch_compile and runtime.device.type == "cuda":
        names = (compile_attr,) if isinstance(compile_attr, str) else compile_attr
        name = next((n for n in names if getattr(pipe, n, None) is not None), names[0])
        setattr(pipe, name, torch.compile(getattr(pipe, name)))
    pipe.set_progress_bar_config(disable=True)
    return pipe
