"""Fault injection for the reliability tests, off unless `SONGSMITH_FAULTS` is set on a replica.

`SONGSMITH_FAULTS='{"music_oom_tag": "boom"}'` makes the music engine raise a CUDA-style out of
memory error for songs whose tags contain "boom", so tests can prove that an engine failure fails
only that job and leaves the replica serving. Never set it in production.
"""

from __future__ import annotations

import json
import os


def _faults() -> dict:
    raw = os.environ.get("SONGSMITH_FAULTS", "")
    return json.loads(raw) if raw else {}


def maybe_oom(stage: str, text: str) -> None:
    marker = _faults().get(f"{stage}_oom_tag")
    if marker and marker in text:
        import torch

        raise torch.OutOfMemoryError(f"CUDA out of memory (injected for {stage} test)")
