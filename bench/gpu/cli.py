"""`python -m bench.gpu`: the command line, the run of each part, the JSON and the report."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import bench.gpu
from bench.gpu.budget import budget_check
from bench.gpu.configs import llm_tokenizer_rel, load_spec
from bench.gpu.codec import bench_codec
from bench.gpu.cover import bench_cover
from bench.gpu.cover_vae import bench_cover_vae
from bench.gpu.dit import bench_dit
from bench.gpu.e2e import bench_e2e
from bench.gpu.llm import bench_llm
from bench.gpu.llm_engines import bench_llm_engines
from bench.gpu.measure import (Gpu, device_info, device_slug, error_entry, free_memory, git_info, lazy_torch,
                               quiet_libraries, utc_now, versions)
from bench.gpu.model_dirs import build_model_dirs, ensure_kits
from bench.gpu.music import bench_music
from bench.gpu.music_lengths import bench_music_lengths
from bench.gpu.params import full_size_param_counts, weights_estimate
from bench.gpu.report import markdown
from bench.gpu.resident import bench_resident
from bench.gpu.settings import (DEFAULT_PARTS, FULL_TIME_BUDGET_S, LLM_BATCH_TARGET, MUSIC_SPECS, PART_ESTIMATE_S, PARTS,
                                RESULTS_DIR, SCHEMA_VERSION, WORKLOADS, Runtime, Workload)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.gpu", description=bench.gpu.__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=("auto", "full", "reduced"), default="auto",
                   help="full on CUDA, reduced otherwise (auto)")
    p.add_argument("--device", default="auto", help="auto | cuda | cuda:N | cpu")
    p.add_argument("--parts", default=None,
                   help=f"comma-separated subset of {PARTS}, 'all', or none (e.g. with --e2e); default: "
                        f"full size {','.join(DEFAULT_PARTS['full'])}; reduced {','.join(DEFAULT_PARTS['reduced'])}")
    p.add_argument("--options", choices=("all", "baseline"), default="all",
                   help="engine options to measure (dtype, compile, offload) or only the production baseline")
    p.add_argument("--music-variant", choices=tuple(MUSIC_SPECS), default="xl-turbo",
                   help="ACE-Step DiT: xl-turbo (configs/prod.yaml's) or the 2B turbo")
    p.add_argument("--e2e", action="store_true",
                   help="add the e2e part (songs through the real app on Ray Serve) to --parts")
    p.add_argument("--time-budget-s", type=float, default=None,
                   help=f"skip a part whose estimate (PART_ESTIMATE_S) would end the run past this many seconds; "
                        f"default {FULL_TIME_BUDGET_S:g} at full size, none at reduced size; 0 = none")
    p.add_argument("--models-dir", type=Path, default=None,
                   help="keep the random-weight model dirs here and reuse them (default: a temp dir, removed)")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default bench/results/gpu_full_size-<device>.json)")
    p.add_argument("--merge", action="store_true",
                   help="keep the results of parts not run now from an existing --out file (split GPU runs)")
    p.add_argument("--threads", type=int, default=None, help="torch threads on CPU (default 1)")
    p.add_argument("--gpu-gb", type=float, default=80.0, help="GPU size the prod.yaml shares refer to (GB)")
    p.add_argument("--repeats", type=int, default=None, help="timed repetitions per measurement")
    p.add_argument("--llm-tokens", type=int, default=None, help="override the LLM budget (400 full / 128 reduced)")
    p.add_argument("--song-seconds", type=float, default=None, help="override the song length (180 full / 10 reduced)")
    p.add_argument("--allow-full-on-cpu", action="store_true", help="run --size full without CUDA (needs >100 GB RAM)")
    return p.parse_args(argv)


def part_errors(name: str, result: dict[str, Any], size: str) -> list[str]:
    """A part's failed sub-measurements that make the run fail. An untiled long song running out of
    GPU memory at full size is a result, not a failure; at reduced size nothing should fail."""
    errs = []
    for vname, x in (result.get("variants") or {}).items():
        if isinstance(x, dict) and "error" in x:
            errs.append(f"{name}.{vname}: {x['error']}")
    for ename, x in (result.get("engines") or {}).items():
        if isinstance(x, dict) and "error" in x:
            errs.append(f"{name}.{ename}: {x['error']}")
    if isinstance(result.get("compiled"), dict) and "error" in result["compiled"]:
        errs.append(f"{name}.compiled: {result['compiled']['error']}")
    for length, row in (result.get("lengths") or {}).items():
        for mode in ("tiled", "untiled"):
            x = row.get(mode) or {}
            if "error" in x and (mode == "tiled" or size != "full"):
                errs.append(f"{name}.{length}s.{mode}: {x['error']}")
    return errs


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    torch = lazy_torch()
    if ns.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(ns.device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    size = ns.size if ns.size != "auto" else ("full" if device.type == "cuda" else "reduced")
    if size == "full" and device.type != "cuda" and not ns.allow_full_on_cpu:
        print("--size full needs a CUDA device (or --allow-full-on-cpu)", file=sys.stderr)
        return 2
    if ns.parts is None:
        parts = list(DEFAULT_PARTS[size])
    elif ns.parts.strip() == "all":
        parts = list(PARTS)
    else:
        parts = [p.strip() for p in ns.parts.split(",") if p.strip() and p.strip() != "none"]
    if ns.e2e and "e2e" not in parts:
        parts.append("e2e")
    parts = [p for p in PARTS if p in parts] + [p for p in parts if p not in PARTS]  # run order
    budget_s = ns.time_budget_s if ns.time_budget_s is not None else (FULL_TIME_BUDGET_S if size == "full" else 0.0)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        print(f"unknown parts {unknown}; choose from {PARTS}", file=sys.stderr)
        return 2
    threads = None
    if device.type == "cpu":
        threads = ns.threads or 1
        torch.set_num_threads(threads)
    rt = Runtime(size=size, device=device, threads=threads, options=ns.options, music_variant=ns.music_variant,
                 gpu_gb=ns.gpu_gb)
    wl = WORKLOADS[size]
    overrides = {k: v for k, v in {"repeats": ns.repeats, "llm_new_tokens": ns.llm_tokens,
                                    "song_s": ns.song_seconds}.items() if v is not None}
    if overrides:
        wl = Workload(**{**asdict(wl), **overrides})
    gpu = Gpu(device)
    quiet_libraries()
    t_start = time.perf_counter()
    info = device_info(device)
    report: dict[str, Any] = {
        "schema": SCHEMA_VERSION, "tool": "python -m bench.gpu", "date": utc_now(), "git": git_info(),
        "device": info, "versions": versions(), "size": size,
        "settings": {**asdict(wl), "music_variant": rt.music_variant, "options": rt.options, "parts": parts,
                     "e2e": "e2e" in parts, "threads": threads, "gpu_gb": rt.gpu_gb, "time_budget_s": budget_s or None,
                     "part_estimate_s": {p: PART_ESTIMATE_S.get(p) for p in ["setup", *parts]} if size == "full" else None},
        "param_counts": {}, "weights_estimate_bytes": {}, "model_dirs": {}, "results": {}, "errors": [],
    }
    print(f"[bench] {info['name']}: {size} size, parts {parts}", flush=True)

    t0 = time.perf_counter()
    report["param_counts"] = full_size_param_counts(rt.music_variant)
    report["param_count_s"] = time.perf_counter() - t0
    report["weights_estimate_bytes"] = weights_estimate(report["param_counts"])

    llm_spec = load_spec("qwen2-7b-instruct")
    music_spec = load_spec(MUSIC_SPECS[rt.music_variant])
    cover_spec = load_spec("sdxl-turbo")
    ensure_kits([llm_tokenizer_rel(llm_spec, size),
                 f"{music_spec['tokenizer']['kit']}/{music_spec['tokenizer']['subfolder']}",
                 *[f"{cover_spec['tokenizer']['kit']}/{s}" for s in cover_spec["tokenizer"]["subfolders"]]])

    tmp = None
    if ns.models_dir is not None:
        root = ns.models_dir.resolve()
        root.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="songsmith-gpu-bench-")
        root = Path(tmp)
    try:
        try:
            dirs = build_model_dirs(root / size, rt, set(parts))
        except Exception as exc:  # noqa: BLE001
            report["errors"].append(f"build: {type(exc).__name__}: {exc}")
            report["results"]["build"] = error_entry(exc)
            dirs = {}
        # A temp dir's path means nothing once removed; --models-dir paths are kept.
        report["model_dirs"] = {k: {**v, "path": v["path"] if tmp is None else None} for k, v in dirs.items()}
        needs = {"llm": ("llm",), "llm_engines": ("llm",), "music": ("music",), "music_lengths": ("music",),
                 "dit": ("music",), "cover": ("cover",), "cover_vae": ("cover", "cover_vae"),
                 "resident": ("llm", "music", "cover"), "e2e": ("llm", "music", "cover"), "codec": ()}
        runs: dict[str, Callable[[], dict[str, Any]]] = {
            "codec": lambda: bench_codec(wl),
            "llm_engines": lambda: bench_llm_engines(dirs["llm"]["path"], rt, wl, gpu),
            "llm": lambda: bench_llm(dirs["llm"]["path"], rt, wl, gpu),
            "music": lambda: bench_music(dirs["music"]["path"], rt, wl, gpu),
            "music_lengths": lambda: bench_music_lengths(dirs["music"]["path"], rt, wl, gpu),
            "dit": lambda: bench_dit(dirs["music"]["path"], rt, wl, gpu),
            "cover": lambda: bench_cover(dirs["cover"]["path"], rt, wl, gpu),
            "cover_vae": lambda: bench_cover_vae(dirs["cover"]["path"], dirs["cover_vae"]["path"], rt, wl, gpu),
            "resident": lambda: bench_resident(dirs, rt, wl, gpu),
            "e2e": lambda: bench_e2e(dirs, rt, wl, root),
        }
        for name in parts:
            if not all(d in dirs for d in needs[name]):
                continue  # its model folder failed to build: the build error is recorded
            est = PART_ESTIMATE_S.get(name, 0) if size == "full" else 0
            spent = time.perf_counter() - t_start
            if budget_s and spent + est > budget_s:
                report["results"][name] = {"skipped": f"time budget: {spent:.0f} s spent + ~{est} s estimated > "
                                                      f"{budget_s:g} s (--time-budget-s 0 runs it)"}
                print(f"[bench] {name}: skipped ({report['results'][name]['skipped']})", flush=True)
                continue
            print(f"[bench] {name} ...", flush=True)
            free_memory()
            t0 = time.perf_counter()
            try:
                report["results"][name] = runs[name]()
            except Exception as exc:  # noqa: BLE001 - record and carry on with the other parts
                report["results"][name] = error_entry(exc)
                report["errors"].append(f"{name}: {type(exc).__name__}: {exc}")
            free_memory()
            report["results"][name]["phase_s"] = time.perf_counter() - t0
            report["errors"].extend(part_errors(name, report["results"][name], size))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    out = ns.out or RESULTS_DIR / f"gpu_full_size-{device_slug(info, size)}.json"
    if ns.merge and out.is_file():
        old = json.loads(out.read_text())
        if old.get("size") == size and old.get("device", {}).get("name") == info["name"]:
            report["merged"] = {}
            for name, res in (old.get("results") or {}).items():
                if name not in report["results"] and not (isinstance(res, dict) and "error" in res):
                    report["results"][name] = res
                    report["merged"][name] = {"date": old.get("date"), "git": old.get("git")}
        else:
            report["errors"].append(f"--merge: {out} is from another device or size; not merged")

    report["budget"] = budget_check(report["results"], rt, report["weights_estimate_bytes"])
    llm = report["results"].get("llm") or {}
    checked = [r for r in report["param_counts"].values() if r["checked"]]
    counts_ok = all(r["ok"] for r in checked)
    report["targets"] = {
        "llm_batch8_over_batch1": {"target": LLM_BATCH_TARGET, "value": llm.get("throughput_ratio"),
                                   "met": llm.get("meets_target")},
        "param_counts_within_2pct": {"target": 0.02, "value": max((abs(r["rel_err"]) for r in checked), default=None),
                                     "met": counts_ok},
    }
    if not counts_ok:
        report["errors"].append("a full-size parameter count is more than 2% off its published size")
    report["wall_s"] = time.perf_counter() - t_start

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    md = markdown(report)
    print(md, flush=True)
    print(f"[bench] wrote {out} in {report['wall_s']:.1f} s", flush=True)
    return 1 if report["errors"] else 0
