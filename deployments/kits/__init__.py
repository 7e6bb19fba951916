"""Local model kits: small, offline-built model folders with the production architectures.

Each kit is a normal `save_pretrained` folder that production code loads with the same
`from_pretrained` calls it uses for the real checkpoints:

=========================  ===============================================  ===========================
kit dir                    loads with                                       stands in for
=========================  ===============================================  ===========================
acestep-v15-turbo-kit      diffusers.AceStepPipeline                        ACE-Step/acestep-v15-xl-turbo-diffusers
acestep-v15-base-kit       diffusers.AceStepPipeline (base)                 ACE-Step/acestep-v15-xl-base-diffusers
sdxl-turbo-kit             diffusers.StableDiffusionXLPipeline              stabilityai/sdxl-turbo
smollm2-135m-instruct      transformers.AutoModelForCausalLM (+AutoTokenizer)  Qwen/Qwen2-7B-Instruct (real text)
qwen2-tiny-kit             transformers.AutoModelForCausalLM (Qwen2)        Qwen/Qwen2-7B-Instruct (fast)
=========================  ===============================================  ===========================

Build with ``python -m deployments.kits build --out models`` or `build_all(Path("models"))`.
Every kit dir holds a ``kit.json`` stamp with a hash of the kit's spec; a kit whose stamp matches
is skipped, so a second build takes about a second. Importing this package is cheap (no torch).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ._common import STAMP_NAME, Kit, build_kit_dir, is_up_to_date, read_stamp, spec_hash
from .acestep import BASE_KIT as ACESTEP_BASE_KIT
from .acestep import BASE_KIT_NAME as ACESTEP_BASE_KIT_DIR
from .acestep import KIT as ACESTEP_KIT
from .acestep import KIT_NAME as ACESTEP_KIT_DIR
from .qwen2_tiny import KIT as QWEN2_TINY_KIT
from .qwen2_tiny import KIT_NAME as QWEN2_TINY_KIT_DIR
from .sdxl import KIT as SDXL_KIT
from .sdxl import KIT_NAME as SDXL_TURBO_KIT_DIR
from .smollm2 import KIT as SMOLLM2_KIT
from .smollm2 import KIT_NAME as SMOLLM2_KIT_DIR

# Build order matters: the Qwen2 tiny kit reuses the SmolLM2 kit's tokenizer when present.
KITS: dict[str, Kit] = {
    k.name: k for k in (ACESTEP_KIT, ACESTEP_BASE_KIT, SDXL_KIT, SMOLLM2_KIT, QWEN2_TINY_KIT)
}
KIT_DIRS: tuple[str, ...] = tuple(KITS)
DEFAULT_MODELS_DIR = Path("models")

__all__ = [
    "ACESTEP_BASE_KIT_DIR",
    "ACESTEP_KIT_DIR",
    "DEFAULT_MODELS_DIR",
    "KITS",
    "KIT_DIRS",
    "QWEN2_TINY_KIT_DIR",
    "SDXL_TURBO_KIT_DIR",
    "SMOLLM2_KIT_DIR",
    "STAMP_NAME",
    "build_all",
    "build_kit",
    "kit_status",
    "read_stamp",
]


def _select(names: Iterable[str] | None) -> list[Kit]:
    if names is None:
        return list(KITS.values())
    wanted = list(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in KITS]
    if unknown:
        raise KeyError(f"unknown kit(s) {unknown}; known: {list(KITS)}")
    return [k for k in KITS.values() if k.name in wanted]  # keep build order


def build_kit(kit: Kit | str, out_dir: Path, force: bool = False) -> tuple[Path, bool, float]:
    """Build one kit under `out_dir` unless its stamp is current. Returns (path, built, seconds)."""
    kit = KITS[kit] if isinstance(kit, str) else kit
    out_dir = Path(out_dir)
    kit_dir = out_dir / kit.name
    t0 = time.perf_counter()
    spec = kit.full_spec()
    digest = spec_hash(spec)
    if not force and is_up_to_date(kit, kit_dir, digest):
        return kit_dir, False, time.perf_counter() - t0
    build_kit_dir(kit, kit_dir, digest, spec)
    return kit_dir, True, time.perf_counter() - t0


def build_all(
    out_dir: Path,
    force: bool = False,
    kits: Iterable[str] | None = None,
    log: Callable[[str], Any] | None = None,
) -> dict[str, Path]:
    """Build (or skip, when up to date) every kit under `out_dir`; returns {kit dir name: path}.

    `log` receives one line per kit (default: print to stdout).
    """
    log = log if log is not None else (lambda line: print(line, flush=True))
    out_dir = Path(out_dir)
    selected = _select(kits)
    paths: dict[str, Path] = {}
    with _build_lock(out_dir):  # concurrent builders (make setup + pytest) wait, then skip
        for kit in selected:
            path, built, seconds = build_kit(kit, out_dir, force=force)
            paths[kit.name] = path
            state = "built" if built else "up to date, skipped"
            log(f"{kit.name:<24} {state:<20} {seconds:6.2f} s  {path}")
    return paths


@contextlib.contextmanager
def _build_lock(out_dir: Path):
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".kits.lock", "a+") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - non-POSIX
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def kit_status(out_dir: Path) -> dict[str, dict[str, Any]]:
    """{kit name: {"path", "up_to_date", "stamp"}} without building anything."""
    out: dict[str, dict[str, Any]] = {}
    for kit in KITS.values():
        kit_dir = Path(out_dir) / kit.name
        digest = spec_hash(kit.full_spec())
        out[kit.name] = {
            "path": str(kit_dir),
            "up_to_date": is_up_to_date(kit, kit_dir, digest),
            "stamp": read_stamp(kit_dir),
        }
    return out


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m deployments.kits", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the kits (skips kits whose kit.json stamp is current)")
    b.add_argument("--out", type=Path, default=DEFAULT_MODELS_DIR, help="models dir (default: models)")
    b.add_argument("--force", action="store_true", help="rebuild even if the stamp matches")
    b.add_argument("--only", nargs="+", choices=list(KITS), metavar="KIT", help=f"subset of {list(KITS)}")
    s = sub.add_parser("status", help="show which kits are built and current")
    s.add_argument("--out", type=Path, default=DEFAULT_MODELS_DIR)
    sub.add_parser("list", help="list the kit dir names")
    args = parser.parse_args(argv)

    if args.cmd == "list":
        for kit in KITS.values():
            print(f"{kit.name:<24} {kit.stands_in_for:<42} {kit.architecture}")
        return 0
    if args.cmd == "status":
        for name, st in kit_status(args.out).items():
            stamp = st["stamp"] or {}
            state = "up to date" if st["up_to_date"] else ("stale" if stamp else "missing")
            print(f"{name:<24} {state:<10} {st['path']}  built_in={stamp.get('build_seconds')}")
        return 0

    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    t0 = time.perf_counter()
    paths = build_all(args.out, force=args.force, kits=args.only)
    print(f"{len(paths)} kit(s) ready in {time.perf_counter() - t0:.2f} s under {args.out}", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main())
