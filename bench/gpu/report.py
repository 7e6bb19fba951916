"""The Markdown report printed after a run (the JSON is the record; this is its summary)."""

from __future__ import annotations

from typing import Any

from bench.common import md_table
from bench.gpu.settings import GB, GIB, LLM_BATCH_TARGET


def _g(b: int | float | None, unit: float = GIB, nd: int = 2) -> str:
    return "-" if b is None else f"{b / unit:.{nd}f}"


def _f(x: float | None, nd: int = 3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def _heading(title: str, result: dict[str, Any]) -> list[str]:
    """A part's section heading, and its error in place of its numbers when it failed."""
    return ["", title, "", *([f"ERROR: {result['error']}"] if "error" in result else [])]


def _variants_table(header: list[str], align: str, result: dict[str, Any], rows_of) -> list[str]:
    """One row (or, for covers, one per batch) for each engine-option variant; a failed variant is
    one ERROR row, a skipped one a `skipped: why` row."""
    pad = [""] * (len(header) - 2)
    rows: list[list[Any]] = []
    for name, x in result["variants"].items():
        if "error" in x:
            rows.append([name, f"ERROR: {x['error'][:80]}", *pad])
            continue
        rows.extend(rows_of(name + (" (baseline)" if x["baseline"] else ""), x))
    rows.extend([name, f"skipped: {why}", *pad] for name, why in result["skipped"].items())
    return md_table(header, rows, align)


def markdown(report: dict[str, Any]) -> str:
    L: list[str] = []
    d, v = report["device"], report["versions"]
    L.append(f"# gpu_full_size: {d['name']} ({report['size']} size)")
    L.append("")
    commit = (report["git"]["commit"] or "?")[:12] + (" (dirty)" if report["git"]["dirty"] else "")
    L.append(f"torch {v['torch']} (CUDA {v['torch_cuda']}), diffusers {v['diffusers']}, transformers "
             f"{v['transformers']}; commit {commit}; {report['date']}")
    L.append("")
    L.append("## Parameter counts (full size, built on the meta device)")
    L.append("")
    rows = []
    for key, r in report["param_counts"].items():
        ref = "-" if not r["reference"] else f"{r['reference']:,}"
        err = "-" if r["rel_err"] is None else f"{100 * r['rel_err']:+.2f}%"
        chk = "ok" if r["ok"] else ("FAIL" if r["ok"] is False else "report only")
        rows.append([key, r["class"], f"{r['params']:,}", ref, err, chk])
    L += md_table(["component", "class", "params", "reference", "rel. err", "check"], rows, "llrrrl")
    tr = report["param_counts"].get("music.transformer", {})
    if tr.get("nominal"):
        L.append("")
        L.append(f"ACE-Step DiT: {tr['params'] / 1e9:.3f} B (closed form {tr['formula_params'] / 1e9:.3f} B; "
                 f"nominal {tr['nominal'] / 1e9:.0f} B, {100 * (tr['params'] / tr['nominal'] - 1):+.1f}%).")
    s = report["settings"]
    L += _new_parts(report)
    llm = report["results"].get("llm")
    if llm:
        L += _heading(f"## LLM: Qwen2-7B-Instruct architecture, {llm.get('dtype', '?')}, "
                      f"{s['llm_new_tokens']} new tokens, greedy", llm)
        if "error" not in llm:
            L += md_table(["batch", "tokens", "best s", "median s", "tokens/s (best)", "tokens/s (median)"],
                          ([b["batch"], b["tokens"], _f(b["best_s"]), _f(b["median_s"]), _f(b["tokens_per_s"], 1),
                            _f(b["tokens_per_s_median"], 1)] for b in llm["batches"].values()), "rrrrrr")
            L.append("")
            L.append(f"Seconds are {llm['clock']}.")
            L.append("")
            L.append(f"Batch 8 / batch 1 throughput: **{llm['throughput_ratio']:.2f}x** "
                     f"(median {llm['batch8_over_batch1_median']:.2f}x, wall clock {llm['throughput_ratio_wall']:.2f}x; "
                     f"target >= {LLM_BATCH_TARGET:g}x: {'MET' if llm['meets_target'] else 'NOT MET'}); "
                     f"load {llm['load_s']:.1f} s, weights {_g(llm['weights_bytes'])} GiB, "
                     f"peak {_g(llm['peak_bytes'])} GiB; "
                     f"every row ran its full budget: {llm['all_rows_full_budget']}.")
    mu = report["results"].get("music")
    if mu:
        L += _heading(f"## Music: {mu.get('model')}, {s['song_s']:g} s song, {s['music_steps']} steps", mu)
        if "error" not in mu:
            L += _variants_table(
                ["variant", "load s", "first call s", "compile s", "render s", "RTF", "weights GiB", "peak GiB"],
                "lrrrrrrr", mu,
                lambda name, x: [[name, _f(x["load_s"], 2), _f(x["first_call_s"], 2), _f(x["compile_s"], 1),
                                  _f(x["render_s"]), _f(x["rtf"], 4), _g(x["weights_bytes"]), _g(x["peak_bytes"])]])
    co = report["results"].get("cover")
    if co:
        L += _heading(f"## Cover: SDXL-Turbo {s['cover_size']}x{s['cover_size']}, {s['cover_steps']} step", co)
        if "error" not in co:
            L += _variants_table(
                ["variant", "batch", "load s", "first call s", "compile s", "latency s", "images/s", "weights GiB",
                 "peak GiB"],
                "lrrrrrrrr", co,
                lambda name, x: [[name, b["batch"], _f(x["load_s"], 2), _f(b["first_call_s"]), _f(b["compile_s"], 1),
                                  _f(b["latency_s"]), _f(b["images_per_s"], 2), _g(x["weights_bytes"]),
                                  _g(x["peak_bytes"])] for b in x["batches"].values()])
    res = report["results"].get("resident")
    if res:
        L += _heading("## All three resident in one process, one song", res)
        if "error" not in res:
            sg = res["song_engines"]
            L.append(f"Allocated after loading: {_g(res['allocated_after_load_bytes'])} GiB "
                     f"(llm {_g(res['engines']['llm']['weights_bytes'])}, music {_g(res['engines']['music']['weights_bytes'])}, "
                     f"cover {_g(res['engines']['cover']['weights_bytes'])}); peak while running one song: "
                     f"{_g(res['peak_bytes'])} GiB (reserved {_g(res['peak_reserved_bytes'])} GiB).")
            L.append("")
            L.append(f"Song through the app's composer ({sg['order']}): words {sg['words_s']:.2f} s "
                     f"(title and categories {sg['meta_s']:.2f} s, beside them), then music {sg['music_s']:.2f} s "
                     f"|| cover {sg['cover_s']:.2f} s; whole song **{sg['total_s']:.2f} s**.")
    bud = report.get("budget")
    if bud:
        L.append("")
        L.append(f"## Memory budget: configs/prod.yaml shares of a {bud['gpu_gb']:g} GB GPU")
        L.append("")
        rows = []
        for part, r in bud["rows"].items():
            fits = "-" if r["fits"] is None else ("yes" if r["fits"] else "NO")
            rows.append([part, f"{r['num_gpus']:.2f}", _g(r["budget_bytes"], GB, 1), _g(r["weights_estimate_bytes"], GB, 1),
                         "yes" if r["weights_fit"] else "NO", _g(r["measured_peak_bytes"], GB, 1), fits])
        L += md_table(["part", "num_gpus", "budget GB", "full-size weights GB", "weights fit", "measured peak GB",
                       "fits"], rows, "lrrrlrl")
        L.append("")
        L.append(bud["note"] + ".")
    e2e = report["results"].get("e2e")
    if e2e:
        L += _heading("## End to end through the app", e2e)
        if "error" not in e2e and e2e.get("skipped"):
            L.append(f"skipped: {e2e['skipped']}")
        elif "error" not in e2e:
            L.append(f"{e2e['mode']}: deploy {e2e['deploy_s']:.1f} s; {e2e['endpoint']} of a {s['song_s']:g} s song: "
                     f"first {e2e['first_request_s']:.2f} s, then **{e2e['request_s']:.2f} s** alone "
                     f"(RTF end to end {e2e['rtf_end_to_end']:.4f}).")
            c = e2e.get("concurrent")
            if c:
                L.append("")
                L.append(f"{c['songs']} songs at once: all done in **{c['wall_s']:.2f} s** "
                         f"({c['slowdown_vs_alone']:.2f}x one song alone; each {', '.join(f'{x:.2f}' for x in c['each_s'])} s).")
            pr = e2e.get("processes") or {}
            if pr.get("per_deployment"):
                L.append("")
                gm = pr.get("gpu_memory") or {}
                L += md_table(["process", "pids", "peak RSS GiB", "peak GPU GiB (nvidia-smi)", "during songs GPU GiB"],
                              ([d, len(x["pids"]), _g(x["rss_peak_bytes"]), _g(x["gpu_used_peak_bytes"]),
                                _g(x["songs_gpu_used_peak_bytes"])] for d, x in pr["per_deployment"].items()), "lrrrr")
                L.append("")
                L.append(f"GPU memory per process: {gm.get('source') or 'skipped: ' + str(gm.get('skipped'))}; "
                         f"device used peak {_g(pr.get('device_used_peak_bytes'))} GiB.")
    tg = report["targets"]
    L.append("")
    L.append("## Targets")
    L.append("")
    for name, t in tg.items():
        state = "-" if t["met"] is None else ("MET" if t["met"] else "NOT MET")
        L.append(f"- {name}: {_f(t['value'], 2)} (target {t['target']}): {state}")
    errs = report.get("errors") or []
    if errs:
        L.append("")
        L.append("## Errors")
        for e in errs:
            L.append(f"- {e}")
    return "\n".join(L) + "\n"


def _skip_or_error(x: dict[str, Any]) -> str | None:
    if "skipped" in x:
        return f"skipped: {x['skipped']}"
    if "error" in x:
        return f"ERROR: {x['error'][:120]}"
    return None


def _new_parts(report: dict[str, Any]) -> list[str]:
    """The default full-size run's parts: codec, llm_engines, music_lengths, dit, cover_vae."""
    L: list[str] = []
    R = report["results"]
    for name in ("codec", "llm_engines", "music_lengths", "dit", "cover_vae", "e2e"):
        x = R.get(name)
        if isinstance(x, dict) and "skipped" in x and len(x) <= 2:
            L += ["", f"## {name}", "", f"skipped: {x['skipped']}"]
    co = R.get("codec")
    if co and "skipped" not in co:
        L += _heading(f"## Audio encode: a {co.get('song_s', 0):g} s stereo 48 kHz song (CPU)", co)
        if "error" not in co:
            L += md_table(["format", "encode s", "x realtime", "MB"],
                          ([f, _f(x["encode_s"]), _f(x["realtime_x"], 0), _g(x["bytes"], 1e6, 1)]
                           for f, x in co["formats"].items()), "lrrr")
    le = R.get("llm_engines")
    if le and "skipped" not in le:
        L += _heading("## LLM engines: songs at once (tags + lyrics + meta each), configs/prod.yaml's llm block", le)
        if "error" not in le:
            rows = []
            for en, e in le["engines"].items():
                msg = _skip_or_error(e)
                if msg:
                    rows.append([en, msg, "", "", "", "", ""])
                    continue
                for n, r in e["runs"].items():
                    if "skipped" in r:
                        rows.append([en, _f(e["start_s"], 1), n, f"skipped (~{r['estimate_s']:g} s)", "", "", ""])
                    else:
                        rows.append([en, _f(e["start_s"], 1), n, _f(r["tok_s"], 1), _f(r["lyrics_p50_s"], 2),
                                     _f(r["lyrics_max_s"], 2), _f(r["wall_s"], 2)])
            L += md_table(["engine", "start s", "songs", "tok/s", "time to lyrics p50 s", "max s", "all done s"],
                          rows, "lrrrrrr")
    ml = R.get("music_lengths")
    if ml and "skipped" not in ml:
        L += _heading(f"## Music by song length, tiled vs untiled VAE decode ({ml.get('model')}, "
                      f"{ml.get('steps')} steps, tiles {ml.get('tile_frames')}/{ml.get('tile_overlap_frames')} frames)", ml)
        if "error" not in ml:
            rows = []
            for length, row in ml["lengths"].items():
                for mode in ("tiled", "untiled"):
                    x = row[mode]
                    if "error" in x:
                        rows.append([length, mode, f"ERROR: {x['error'][:70]}", "", "", "", ""])
                    else:
                        rows.append([length, mode, _f(x["render_s"]), _f(x["diffusion_s"]), _f(x["decode_s"]),
                                     _g(x["peak_bytes"]), _g(x["rss_peak_over_start_bytes"], 2**20, 0)])
            L += md_table(["song s", "decode", "render s", "diffusion s", "decode s", "peak GiB", "RSS growth MiB"],
                          rows, "llrrrrr")
            L += ["", f"Peak: {ml['peak_source']}."]
    dt = R.get("dit")
    if dt and "skipped" not in dt:
        L += _heading(f"## DiT: attention and per-step time ({dt.get('song_s', 0):g} s song)", dt)
        if "error" not in dt:
            sd, dp = dt["sdpa"], dt.get("dispatch", {})
            L.append(f"SDPA switches: flash {sd['flash_sdp_enabled']}, mem-efficient {sd['mem_efficient_sdp_enabled']}, "
                     f"cuDNN {sd['cudnn_sdp_enabled']}, math {sd['math_sdp_enabled']}; flash built: "
                     f"{sd['is_flash_attention_available']}. diffusers dispatcher: {dp.get('active_backend')} "
                     f"({dp.get('processor')}, sliding window {dp.get('sliding_window')}). Kernels in one step: "
                     f"{', '.join(f'{k} x{v}' for k, v in dt.get('sdpa_kernels', {}).items()) or '-'}.")
            L.append("")
            rows = []
            for mode in ("eager", "compiled"):
                x = dt.get(mode) or {}
                msg = _skip_or_error(x)
                rows.append([mode, msg, "", "", "", ""] if msg else
                            [mode, _f(x["load_s"], 1), _f(x["first_call_s"], 2), _f(x.get("compile_s"), 1),
                             _f(x["step_s"], 4), _f(x["render_s"], 3)])
            L += md_table(["mode", "load s", "first call s", "compile s", "per step s (median)", "render s"], rows,
                          "lrrrrr")
    cv = R.get("cover_vae")
    if cv and "skipped" not in cv:
        L += _heading(f"## Cover VAE: stock vs fp16-fix ({cv.get('dtype')}, {cv.get('size')}px)", cv)
        if "error" not in cv:
            rows = []
            for vn, x in cv["variants"].items():
                if "error" in x:
                    rows.append([vn, f"ERROR: {x['error'][:80]}", "", "", "", ""])
                    continue
                for b in x["batches"].values():
                    rows.append([vn, b["batch"], "yes" if x["upcasts_to_fp32"] else "no", _f(x["load_s"], 2),
                                 _f(b["latency_s"]), _g(x["peak_bytes"])])
            L += md_table(["VAE", "batch", "fp32 upcast", "load s", "latency s", "peak GiB"], rows, "lrlrrr")
            L += ["", f"fp16-fix VAE: {cv['fp16_fix_vae']}."]
    return L
