"""Shared helpers for the kit builders: spec hashing, the `kit.json` stamp, atomic writes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

STAMP_NAME = "kit.json"
# Bump to force every kit to rebuild (stamp layout / shared builder logic changed). A change to one
# kit's build code needs that kit's VERSION bumped: only the spec (not the code) is hashed.
BUILDER_VERSION = 1


def lib_versions() -> dict[str, str]:
    """major.minor of the libraries whose save formats the kits depend on (cheap: no imports)."""
    out = {}
    for dist in ("torch", "diffusers", "transformers", "tokenizers"):
        try:
            out[dist] = ".".join(metadata.version(dist).split("+")[0].split(".")[:2])
        except metadata.PackageNotFoundError:  # pragma: no cover - all are dependencies
            out[dist] = "missing"
    return out


def spec_hash(spec: dict[str, Any]) -> str:
    payload = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Kit:
    """One local model kit: how to describe it (spec), build it and smoke-check it."""

    name: str  # directory name under the models dir
    architecture: str
    stands_in_for: str
    description: str
    spec: Callable[[], dict[str, Any]]  # JSON-able; hashed into the stamp
    build: Callable[[Path], dict[str, Any]]  # writes the kit into an empty dir; returns extra stamp info
    required_files: tuple[str, ...] = field(default=())

    def full_spec(self) -> dict[str, Any]:
        return {
            "builder_version": BUILDER_VERSION,
            "kit": self.name,
            "architecture": self.architecture,
            "libs": lib_versions(),
            "spec": self.spec(),
        }


def read_stamp(kit_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((kit_dir / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None


def is_up_to_date(kit: Kit, kit_dir: Path, digest: str) -> bool:
    stamp = read_stamp(kit_dir)
    if not stamp or stamp.get("spec_hash") != digest:
        return False
    return all((kit_dir / f).exists() for f in kit.required_files)


def build_kit_dir(kit: Kit, kit_dir: Path, digest: str, spec: dict[str, Any]) -> float:
    """Build `kit` into a temp dir next to `kit_dir`, write the stamp, swap it in. Returns seconds."""
    kit_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = kit_dir.parent / f".{kit_dir.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    t0 = time.perf_counter()
    try:
        with quiet_build():
            extra = kit.build(tmp) or {}
        seconds = time.perf_counter() - t0
        stamp = {
            "kit": kit.name,
            "architecture": kit.architecture,
            "stands_in_for": kit.stands_in_for,
            "description": kit.description,
            "spec_hash": digest,
            "build_seconds": round(seconds, 3),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **extra,
            "spec": spec,
        }
        (tmp / STAMP_NAME).write_text(json.dumps(stamp, indent=2, sort_keys=False, default=str) + "\n")
        if kit_dir.exists():
            old = kit_dir.parent / f".{kit_dir.name}.old-{os.getpid()}"
            kit_dir.rename(old)
            tmp.rename(kit_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(kit_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return seconds


def dir_size_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def clean_tokenizer_config(tok_dir: Path) -> None:
    """Drop load-time bookkeeping keys transformers 5 writes into tokenizer_config.json."""
    path = tok_dir / "tokenizer_config.json"
    cfg = json.loads(path.read_text())
    for key in ("is_local", "local_files_only", "_commit_hash"):
        cfg.pop(key, None)
    path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")


class quiet_build:
    """Context manager: no tqdm bars / known-noise warnings from diffusers and transformers while building."""

    def __enter__(self):
        import warnings

        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.filterwarnings("ignore", message=r".*weight_norm.*is deprecated", category=FutureWarning)
        self._restore = []
        try:
            from transformers.utils import logging as tlog

            if tlog.is_progress_bar_enabled():
                tlog.disable_progress_bar()
                self._restore.append(tlog.enable_progress_bar)
            level = tlog.get_verbosity()
            tlog.set_verbosity_error()  # e.g. "CLIPImageProcessor requires torchvision" on import
            self._restore.append(lambda: tlog.set_verbosity(level))
        except ImportError:  # pragma: no cover
            pass
        try:
            from diffusers.utils import logging as dlog

            if dlog.is_progress_bar_enabled():
                dlog.disable_progress_bar()
                self._restore.append(dlog.enable_progress_bar)
        except ImportError:  # pragma: no cover
            pass
        return self

    def __exit__(self, *exc):
        for fn in self._restore:
            fn()
        self._warnings.__exit__(*exc)
        return False
