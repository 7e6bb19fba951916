"""Takes: one request's takes rendered as one pipeline batch vs one take, on the dev kit.

    .venv/bin/python -m bench.takes [--duration 30] [--steps 8] [--takes 4] [--repeats 5] [--threads 1]

Renders a `--duration` s text2music song with the music engine (`MusicEngine.render`: the
diffusion steps and the VAE decode, what the render thread does) as 1 take and as `--takes` takes
in one batch, `--repeats` times each (interleaved) after one warm-up render of each shape, and reports takes per
second of render time for both and their ratio (> 1: the batch renders more takes per second than
one-take requests would). The encode of each take (wav, the request default) is timed apart: the
deployment runs it on its encoder threads beside the next render. Prints a Markdown table and
writes bench/results/takes.json.

What it doesn't show: a GPU. The kit is the real ACE-Step 1.5 architecture with tiny widths
(transformer and text encoder 32 wide, an 8-channel decoder), in float32 on this CPU, so a batch
saves only the per-call fixed costs (prompt encoding, Python per step, kernel set-up) while the
arithmetic, the VAE decode above all, grows with the takes; on a GPU a full-size transformer's
batch fills otherwise idle compute and the ratio is expected to be higher. Measure there before
sizing replicas by takes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file (`python bench/takes.py`): `bench` needs the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import REPO, machine, md_table, self_rss, write_result  # noqa: E402

KIT = REPO / "models" / "acestep-v15-turbo-kit"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=30.0, help="song length in seconds")
    ap.add_argument("--steps", type=int, default=8, help="diffusion steps (turbo's default)")
    ap.add_argument("--takes", type=int, default=4, help="takes in the batch (at most MAX_TAKES)")
    ap.add_argument("--repeats", type=int, default=5, help="timed renders of each shape")
    ap.add_argument("--threads", type=int, default=1, help="torch threads, as configs/dev.yaml's music engine")
    a = ap.parse_args()

    from deployments.config import MusicArgs
    from deployments.music import MusicEngine, MusicRequest
    from deployments.protocol import MAX_TAKES

    if not 2 <= a.takes <= MAX_TAKES:
        ap.error(f"--takes must be 2 to {MAX_TAKES}")
    engine = MusicEngine(MusicArgs(model=str(KIT), num_threads=a.threads, warmup=False))
    song = dict(tags="pop, piano, upbeat", lyrics="[verse]\nhello again\n[chorus]\nsing it", duration_s=a.duration,
                steps=a.steps)
    # The VAE decode's share of each render, timed around the pipeline's own vae.decode call.
    vae, decode_s = engine.pipe.vae, [0.0]
    plain_decode = vae.decode

    def timed_decode(*args, **kwargs):
        t = time.perf_counter()
        try:
            return plain_decode(*args, **kwargs)
        finally:
            decode_s[0] += time.perf_counter() - t

    vae.decode = timed_decode
    shapes = (1, a.takes)
    load_before = os.getloadavg()
    for takes in shapes:
        engine.render(MusicRequest(takes=takes, seed=0, **song))  # warm-up: this batch shape's first-call costs
    runs = {takes: {"render_s": [], "decode_s": [], "encode_s_per_take": []} for takes in shapes}
    for r in range(a.repeats):  # interleaved, so a busy spell on a shared machine hits both shapes alike
        for takes in shapes:
            decode_s[0] = 0.0
            t0 = time.perf_counter()
            rendered = engine.render(MusicRequest(takes=takes, seed=1 + r, **song))
            runs[takes]["render_s"].append(time.perf_counter() - t0)
            runs[takes]["decode_s"].append(decode_s[0])
            t1 = time.perf_counter()
            for s in rendered:
                engine.encode(s)
            runs[takes]["encode_s_per_take"].append((time.perf_counter() - t1) / takes)
            assert len(rendered) == takes and all(s.audio.shape[1] == round(a.duration * 48000) for s in rendered)
    vae.decode = plain_decode
    cases = []
    for takes in shapes:
        run = runs[takes]
        median = statistics.median(run["render_s"])
        row = {"takes": takes, **run, "render_s_median": median, "takes_per_s": takes / median,
               "render_s_per_take": median / takes, "decode_share": statistics.median(
                   d / t for d, t in zip(run["decode_s"], run["render_s"])),
               "encode_s_per_take_median": statistics.median(run["encode_s_per_take"])}
        cases.append(row)
        print(f"{takes} take(s): render {median:.2f} s (median of {a.repeats}; VAE decode {row['decode_share']:.0%} "
              f"of it), {row['takes_per_s']:.3f} takes/s, encode {row['encode_s_per_take_median']:.3f} s per take",
              flush=True)
    one, many = cases
    ratio = many["takes_per_s"] / one["takes_per_s"]
    table = md_table(
        ["takes per request", "render (s, median)", "render per take (s)", "takes/s", "VAE decode share",
         "encode per take (s)"],
        [[c["takes"], f"{c['render_s_median']:.2f}", f"{c['render_s_per_take']:.2f}", f"{c['takes_per_s']:.3f}",
          f"{c['decode_share']:.0%}", f"{c['encode_s_per_take_median']:.3f}"] for c in cases],
        align="rrrrrr",
    )
    notes = [
        f"Dev kit (models/acestep-v15-turbo-kit: the real ACE-Step 1.5 architecture, random weights, tiny widths), "
        f"float32 on this CPU, {a.threads} torch thread(s); a {a.duration:g} s text2music song at {a.steps} steps; "
        f"render = MusicEngine.render (diffusion + VAE decode, one pipeline call per request), median of "
        f"{a.repeats} renders of each shape, interleaved, after a warm-up render of each; VAE decode share = the "
        "time in the pipeline's vae.decode over the render's.",
        f"{a.takes} takes in one batch render {ratio:.2f}x the takes per second of one-take requests.",
        "encode = MusicEngine.encode of one take to wav (the request default), which the deployment runs on its "
        "encoder threads while the next request renders.",
        f"Why: on this CPU the render is the VAE decode ({many['decode_share']:.0%} of it), whose work grows "
        "linearly with the takes, and the kit's diffusion steps, the part a batch shares, are a few percent. So on "
        "CPU replicas takes cost about what separate songs cost; what a batch saves there is a queue slot and a "
        "prompt encoding, not render time. Shared 2-core machine: renders vary by tens of percent from run to run, "
        "which is why the shapes are interleaved.",
        "What this does not show: a GPU. A full-size transformer's batch fills otherwise idle GPU compute and the "
        "ratio is expected to be higher there; measure on a GPU before sizing replicas by takes.",
    ]
    print()
    print("\n".join(table))
    print()
    for n in notes:
        print(f"- {n}")
    path = write_result("takes", {**machine(), "threads": a.threads, "duration_s": a.duration, "steps": a.steps,
                                  "repeats": a.repeats, "cases": cases, "ratio_takes_per_s": ratio,
                                  "load_avg_1m_before_after": [load_before[0], os.getloadavg()[0]],
                                  "rss": self_rss(), "table": table, "notes": notes})
    print(f"\nwrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
