"""Song path on this machine: our Serve composition against a seed-style baseline, same engines.

    .venv/bin/python -m bench.song_path [--songs 20] [--duration 30]

Ours: `POST /generate-from-description` on the dev stack (SmolLM2 + kits, local storage), one
song at a time. Per song: each stage's model time (recorded by the deployments), the critical
path (LLM, then music, then uploads), end-to-end latency at the client, overhead (end-to-end
minus critical path).
Baseline: the seed's shape: the same engines called one after another in one process (tags,
lyrics, music, cover, categories, uploads), with the same settings.
Prints a table and writes bench/results/song_path.json.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from pathlib import Path

import httpx

if __package__ in (None, ""):  # run as a file (`python bench/song_path.py`): `bench` needs the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import machine, md_table, pct, stack_memory, write_result  # noqa: E402
from serve_app.localdev.cluster import REPO, config_args, merge, start_cluster, stop_cluster  # noqa: E402

DESCRIPTIONS = [
    "an upbeat synthwave song about driving through a neon city at night",
    "a sad country ballad about an old dog waiting at the door",
    "a funky disco track about dancing until sunrise",
    "a calm folk song about a lighthouse keeper",
    "an energetic rock anthem about winning the final game",
]


def llm_overrides(tokens: int) -> dict:
    return {"max_new_tokens_lyrics": tokens, "max_new_tokens_tags": 48, "max_new_tokens_meta": 32}


def critical_path(t: dict) -> float:
    """The longest chain of model and storage time through the song's DAG (see composer.py).

    The LLM phase is measured as the LLM deployment recorded it (its calls for one song run
    concurrently, batched or on separate replicas); after it, stage durations are summed along
    each chain: words → music → uploads → manifest, title/categories → manifest, and
    tags → cover → uploads → manifest. Waiting between stages is therefore overhead.
    """
    sec = {k: v["seconds"] for k, v in t.items()}
    llm = [k for k in ("tags", "lyrics", "meta") if k in t]
    t0 = min(t[k]["start_s"] for k in llm)
    words_end = max(t[k]["end_s"] for k in ("tags", "lyrics") if k in t)
    uploads = max(sec.get("upload_audio", 0.0), sec.get("upload_cover", 0.0))
    manifest = sec.get("upload_manifest", 0.0)
    via_music = (words_end - t0) + sec["music"] + uploads
    via_meta = t["meta"]["end_s"] - t0
    via_cover = (t["tags"]["end_s"] - t0 if "tags" in t else 0.0) + sec.get("cover", 0.0) + uploads
    return max(via_music, via_meta, via_cover) + manifest


def run_ours(args, storage_dir: str) -> list[dict]:
    token = secrets.token_urlsafe(24)
    cluster = start_cluster(num_cpus=8, num_gpus=0, lean=True)  # Ray as `make serve` runs it
    try:
        llm = llm_overrides(args.tokens) | ({"engine": args.llm_engine} if args.llm_engine else {})
        app_args = merge(config_args("configs/dev.yaml"), {
            "llm": {"engine": llm},
            "storage": {"local_dir": storage_dir},
            "jobs": {"sqlite_path": f"{storage_dir}/jobs.db"},
            "auth": {"generate_dev_token": False},
        })
        base = cluster.deploy(app_args, name="bench", route_prefix="/", token=token, timeout_s=300)
        time.sleep(3)
        idle, idle_pss = stack_memory()
        print(f"idle memory of the stack (Ray, 4 replicas, this driver): RSS {idle / 2**30:.2f} GiB, "
              f"PSS {idle_pss / 2**30:.2f} GiB (`make serve` alone: bench/idle_memory.py)", flush=True)
        out = []
        with httpx.Client(base_url=base, timeout=600, headers={"Authorization": f"Bearer {token}"}) as c:
            for i in range(args.songs + 1):  # the first is a warm-up
                body = {"full_described_song": DESCRIPTIONS[i % len(DESCRIPTIONS)],
                        "audio_duration": args.duration, "seed": i}
                t0 = time.perf_counter()
                r = c.post("/generate-from-description", json=body)
                e2e = time.perf_counter() - t0
                r.raise_for_status()
                t = r.json()["timings"]
                if i == 0:
                    continue
                cp = critical_path(t)
                out.append({"e2e_s": e2e, "critical_path_s": cp, "overhead_s": e2e - cp,
                            "stages_s": {k: v["seconds"] for k, v in t.items()}})
                out[-1]["idle_rss_gib"], out[-1]["idle_pss_gib"] = idle / 2**30, idle_pss / 2**30
                print(f"ours   song {i:2d}: e2e {e2e:6.2f}s  critical {cp:6.2f}s  overhead {1000 * (e2e - cp):6.1f}ms",
                      flush=True)
        return out
    finally:
        stop_cluster()


def run_baseline(args, storage_dir: str) -> list[dict]:
    """The seed's way: one process, one step after another."""
    import torch

    from deployments.config import CoverArgs, LLMArgs, MusicArgs
    from deployments.cover import CoverEngine, CoverRequest, cover_prompt
    from deployments.llm import LLMEngine
    from deployments.music import MusicEngine, MusicRequest
    from serve_app.storage import LocalStore

    torch.set_num_threads(1)
    # The same engine settings as the dev stack (configs/dev.yaml), with the bench's token budgets.
    dev = config_args("configs/dev.yaml")

    def engine_args(name: str, **override) -> dict:
        kw = {**dev[name]["engine"], **override}
        kw["model"] = str(REPO / kw["model"])
        return kw

    # One process: oneDNN settles its cache size at the first op, here the LLM's (the seed's
    # process had one cache too); ours sizes it per replica (deployments/config.py).
    llm = LLMEngine(LLMArgs(**engine_args("llm", **llm_overrides(args.tokens))))
    music = MusicEngine(MusicArgs(**engine_args("music")))
    cover = CoverEngine(CoverArgs(**engine_args("cover")))
    store = LocalStore(storage_dir, secrets.token_bytes(32))
    out = []
    for i in range(args.songs + 1):
        d = DESCRIPTIONS[i % len(DESCRIPTIONS)]
        stages = {}
        t0 = time.perf_counter()

        def timed(name, fn, *a, **kw):
            s = time.perf_counter()
            res = fn(*a, **kw)
            stages[name] = time.perf_counter() - s
            return res

        tags = timed("tags", llm.write_tags, d, False).tags
        lyrics = timed("lyrics", llm.write_lyrics, d).lyrics
        song = timed("music", music.generate, MusicRequest(tags=", ".join(tags), lyrics=lyrics,
                                                           duration_s=args.duration, seed=i))[0]  # one take
        png = timed("cover", cover.generate_batch, [CoverRequest(prompt=cover_prompt(", ".join(tags)), seed=i)])[0].png
        timed("meta", llm.write_meta, d, tags, lyrics)
        sid = secrets.token_hex(8)
        timed("uploads", lambda: asyncio.run(_upload(store, sid, song.audio, png)))
        e2e = time.perf_counter() - t0
        if i == 0:
            continue
        out.append({"e2e_s": e2e, "stages_s": stages})
        print(f"seed   song {i:2d}: e2e {e2e:6.2f}s", flush=True)
    return out


async def _upload(store, sid, audio, png):
    await store.put(f"songs/{sid}/audio.wav", audio, "audio/wav")
    await store.put(f"songs/{sid}/cover.png", png, "image/png")
    await store.put(f"songs/{sid}/manifest.json", b"{}", "application/json")


def summarize(ours: list[dict], base: list[dict]) -> dict:
    def stat(rows, key):
        vals = [r[key] for r in rows]
        return {"p50": pct(vals, 50), "p95": pct(vals, 95)}

    def stage(rows, name):
        vals = [r["stages_s"].get(name, 0.0) for r in rows]
        return {"p50": pct(vals, 50), "p95": pct(vals, 95)}

    ratios = [o["e2e_s"] / b["e2e_s"] for o, b in zip(ours, base)]
    return {
        "ours": {"e2e_s": stat(ours, "e2e_s"), "critical_path_s": stat(ours, "critical_path_s"),
                 "overhead_s": stat(ours, "overhead_s"),
                 "e2e_over_critical": {"p50": pct([o["e2e_s"] / o["critical_path_s"] for o in ours], 50),
                                       "p95": pct([o["e2e_s"] / o["critical_path_s"] for o in ours], 95)},
                 "stages_s": {k: stage(ours, k) for k in ("tags", "lyrics", "music", "cover", "meta",
                                                          "upload_audio", "upload_cover", "upload_manifest")}},
        "baseline": {"e2e_s": stat(base, "e2e_s"),
                     "stages_s": {k: stage(base, k) for k in ("tags", "lyrics", "music", "cover", "meta", "uploads")}},
        "ours_over_baseline": {"p50": pct(ratios, 50), "p95": pct(ratios, 95), "max": max(ratios)},
    }


def table(s: dict) -> str:
    o, b = s["ours"], s["baseline"]
    rows = md_table(["metric", "p50", "p95"], [
        ["ours: end-to-end (s)", f"{o['e2e_s']['p50']:.2f}", f"{o['e2e_s']['p95']:.2f}"],
        ["ours: critical path (s)", f"{o['critical_path_s']['p50']:.2f}", f"{o['critical_path_s']['p95']:.2f}"],
        ["ours: overhead (ms)", f"{1000 * o['overhead_s']['p50']:.0f}", f"{1000 * o['overhead_s']['p95']:.0f}"],
        ["ours: end-to-end / critical path", f"{o['e2e_over_critical']['p50']:.3f}",
         f"{o['e2e_over_critical']['p95']:.3f}"],
        ["seed-style baseline: end-to-end (s)", f"{b['e2e_s']['p50']:.2f}", f"{b['e2e_s']['p95']:.2f}"],
        ["ours / baseline", f"{s['ours_over_baseline']['p50']:.3f}", f"{s['ours_over_baseline']['p95']:.3f}"],
    ])
    rows += ["", *md_table(["stage (model time, s, p50)", "ours", "baseline"],
                           ([k, f"{o['stages_s'][k]['p50']:.2f}", f"{b['stages_s'][k]['p50']:.2f}"]
                            for k in ("tags", "lyrics", "music", "cover", "meta")))]
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--songs", type=int, default=20, help="Songs per side (after one warm-up each).")
    p.add_argument("--duration", type=float, default=60.0, help="Seconds of audio per song.")
    p.add_argument("--tokens", type=int, default=160, help="LLM token budget for lyrics.")
    p.add_argument("--llm-engine", choices=["vllm", "transformers"], default=None,
                   help="Ours: the LLM engine (default: configs/dev.yaml's). The baseline is always transformers.")
    args = p.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        ours = run_ours(args, str(Path(tmp) / "ours"))
        base = run_baseline(args, str(Path(tmp) / "base"))
    summary = summarize(ours, base)
    result = {**machine(), "idle_rss_gib": ours[0]["idle_rss_gib"], "idle_pss_gib": ours[0]["idle_pss_gib"], "songs": args.songs, "duration_s": args.duration, "lyrics_tokens": args.tokens,
              "llm_engine": args.llm_engine or config_args("configs/dev.yaml")["llm"]["engine"].get("engine", "vllm"),
              "summary": summary, "ours": ours, "baseline": base}
    path = write_result("song_path", result)
    print("\n" + table(summary))
    print(f"\nidle memory of the stack: RSS {result['idle_rss_gib']:.2f} GiB, PSS {result['idle_pss_gib']:.2f} GiB "
          "(target < 3 GiB)")
    print(f"\nwritten: {path}")
    ok = summary["ours"]["overhead_s"]["p50"] <= 0.100 and summary["ours"]["e2e_over_critical"]["p50"] <= 1.10
    ok = ok and summary["ours_over_baseline"]["max"] < 1.0
    print("targets (overhead p50 <= 100 ms, e2e <= 1.10 x critical path, ours/baseline < 1 every song):",
          "MET" if ok else "NOT MET")
    return 0


if __name__ == "__main__":
    sys.exit(main())
