"""Measurement plumbing: torch (imported late), clocks, GPU memory, error entries, and the machine and
library versions a report records."""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import os
import platform
import re
import statistics
import subprocess
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from bench.common import git, self_rss


def lazy_torch():
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


def versions() -> dict[str, str | None]:
    import diffusers
    import transformers

    torch = lazy_torch()
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


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def free_memory() -> None:
    gc.collect()
    torch = lazy_torch()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


class Gpu:
    """CUDA sync, peak-memory resets and snapshots; every number is None on CPU (RSS is kept)."""

    def __init__(self, device):
        self.torch = lazy_torch()
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
        snap.update(self_rss())
        return snap


def timed(gpu: Gpu, fn: Callable[[], Any]) -> tuple[Any, float]:
    gpu.sync()
    t0 = time.perf_counter()
    out = fn()
    gpu.sync()
    return out, time.perf_counter() - t0


def stats_of(samples: list[float]) -> dict[str, Any]:
    return {"best_s": min(samples), "median_s": statistics.median(samples), "samples_s": [round(s, 6) for s in samples]}


def peak_of(*snaps: dict[str, Any]) -> int | None:
    vals = [s.get("peak_allocated_bytes") for s in snaps if s and s.get("peak_allocated_bytes") is not None]
    return max(vals) if vals else None


def error_entry(exc: BaseException) -> dict[str, str]:
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


def git_info() -> dict[str, Any]:
    try:
        return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def device_info(device) -> dict[str, Any]:
    torch = lazy_torch()
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


def reset_rss_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its RSS now (Linux `clear_refs` 5); False where it can't.
    A CPU has no max_memory_allocated; this gives each measurement its own peak window."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@contextlib.contextmanager
def timed_calls(obj, attr: str, gpu: "Gpu", into: list[float]):
    """Time every call of `obj.attr` (an instance attribute shadowing the method), CUDA-synchronized."""
    orig = getattr(obj, attr)

    def wrapper(*a, **k):
        gpu.sync()
        t0 = time.perf_counter()
        out = orig(*a, **k)
        gpu.sync()
        into.append(time.perf_counter() - t0)
        return out

    setattr(obj, attr, wrapper)
    try:
        yield into
    finally:
        with contextlib.suppress(AttributeError):
            delattr(obj, attr)  # back to the class's method
