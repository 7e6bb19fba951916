"""Audio decode memory: ACE-Step's Oobleck VAE decode, tiled and untiled, at 30, 180 and 600 s.

    .venv/bin/python -m bench.decode_memory [--durations 30 180 600] [--threads 1]

Each case decodes random latents of one song length through the dev kit's VAE, set up by the
music engine's own `deployments.music.configure_vae` (the in-place decoder, tiling on or off), in
a fresh Python process: a CPU has no `max_memory_allocated`, and tracemalloc does not see torch's
allocations, so the peak is the child's VmHWM (peak RSS) from /proc, reset just before the decode
(`clear_refs`) and compared with its RSS then. Cases run shortest first; before each untiled case
the memory it will take is extrapolated from the shorter ones and a case that would not fit in
this machine's available memory is skipped, with a note.

What it shows: how decode memory grows with the song untiled and stays flat tiled, the time
tiling costs or saves, and how many decoder calls a song takes. What it doesn't: the kit's
decoder is 16x narrower than the real one (8 channels in its last block, not 128) and runs in
float32 on a CPU, so absolute megabytes and seconds are not the GPU's. The last columns are the
full-size decoder's arithmetic instead (shapes on torch's meta device, no weights): its largest
single activation per decoder call, in elements and in GiB at bf16. Prints a Markdown table and
writes bench/results/decode_memory.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file (`python bench/decode_memory.py`): `bench` needs the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import REPO, machine, md_table, write_result  # noqa: E402

KIT = REPO / "models" / "acestep-v15-turbo-kit"
FULL_SIZE = REPO / "bench" / "model_configs" / "acestep-v15-xl-turbo.json"
FRAMES_PER_S = 25  # 48 kHz / 1920 samples per latent frame
MIB = 2**20
FIT_SHARE = 0.6  # run an untiled case only if its extrapolated peak is under this share of MemAvailable


def proc_status(pid: str = "self") -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(rest.split()[0]) * 1024
    return out


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise OSError("no MemAvailable in /proc/meminfo")


def child(case: dict) -> dict:
    """One decode in this (fresh) process; returns its time, decoder calls and memory."""
    import torch
    from diffusers import AutoencoderOobleck

    from deployments.config import MusicArgs
    from deployments.music import configure_vae
    from deployments.runtime import resolve_runtime

    args = MusicArgs(model=str(KIT), num_threads=case["threads"], vae_tiling=case["tiled"])
    resolve_runtime(args)  # the engine's CPU settings: threads, oneDNN cache
    vae = AutoencoderOobleck.from_pretrained(KIT / "vae").eval()
    configure_vae(vae, args)
    calls: list[int] = []
    vae.decoder.register_forward_pre_hook(lambda _m, inputs: calls.append(int(inputs[0].shape[-1])))
    frames = int(case["duration_s"] * FRAMES_PER_S)
    channels = vae.config.decoder_input_channels
    z = torch.randn(1, channels, frames, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        vae.decode(z[..., :32])  # first-call costs (kernel set-up) out of the measurement
    calls.clear()
    gc.collect()
    reset = True
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS now
    except OSError:
        reset = False
    before = proc_status()
    t0 = time.perf_counter()
    with torch.inference_mode():
        audio = vae.decode(z).sample
    decode_s = time.perf_counter() - t0
    after = proc_status()
    return {
        "frames": frames, "decoder_calls": len(calls), "largest_call_frames": max(calls),
        "decode_s": decode_s, "rss_before_bytes": before["VmRSS"], "peak_rss_bytes": after["VmHWM"],
        "decode_peak_bytes": after["VmHWM"] - before["VmRSS"], "hwm_reset": reset,
        "output_bytes": audio.numel() * audio.element_size(),
    }


def full_size_largest(frames: int) -> int:
    """Elements of the largest single activation of the full-size decoder over `frames` latent
    frames: shapes only, on torch's meta device."""
    import torch
    from diffusers import AutoencoderOobleck

    cfg = json.loads(FULL_SIZE.read_text())["components"]["vae"]["config"]
    with torch.device("meta"):
        vae = AutoencoderOobleck(**cfg)
    largest = 0

    def hook(_m, _i, out):
        nonlocal largest
        largest = max(largest, out.numel())

    for m in vae.decoder.modules():
        if not list(m.children()):
            m.register_forward_hook(hook)
    with torch.inference_mode():
        vae.decoder(torch.empty(1, cfg["decoder_input_channels"], frames, device="meta"))
    return largest


def run_case(case: dict, timeout_s: float) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.decode_memory", "--child", json.dumps(case)], cwd=REPO,
                         capture_output=True, text=True, timeout=timeout_s)
    if out.returncode != 0:
        raise RuntimeError(f"case {case} failed (rc {out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--durations", type=float, nargs="+", default=[30.0, 180.0, 600.0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads, as configs/dev.yaml's music engine")
    ap.add_argument("--timeout", type=float, default=1200.0, help="seconds per case")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(json.loads(a.child))), flush=True)
        return

    from deployments.config import MusicArgs

    tile = MusicArgs().vae_tile_frames
    cases, rates = [], {}  # rates: decode peak bytes per latent frame, per mode, from the longest case run
    for duration in sorted(a.durations):
        for tiled in (False, True):
            mode = "tiled" if tiled else "untiled"
            case = {"duration_s": duration, "tiled": tiled, "threads": a.threads}
            frames = int(duration * FRAMES_PER_S)
            row = {**case, "mode": mode, "frames": frames}
            if not tiled and mode in rates:
                need, avail = rates[mode] * frames, mem_available()
                row["expected_peak_bytes"] = int(need)
                if need > FIT_SHARE * avail:
                    row["skipped"] = (f"needs ~{need / 2**30:.1f} GiB (extrapolated from shorter songs), over "
                                      f"{FIT_SHARE:.0%} of the {avail / 2**30:.1f} GiB available now")
                    print(f"{duration:g} s {mode}: skipped, {row['skipped']}", flush=True)
            if "skipped" not in row:
                print(f"{duration:g} s {mode} ...", end=" ", flush=True)
                row.update(run_case(case, a.timeout))
                rates[mode] = row["decode_peak_bytes"] / frames
                print(f"{row['decode_s']:.1f} s, decode peak {row['decode_peak_bytes'] / MIB:.0f} MiB", flush=True)
            window = min(frames, tile) if tiled else frames
            row["full_size_largest_elements"] = full_size_largest(window)
            row["full_size_largest_gib_bf16"] = row["full_size_largest_elements"] * 2 / 2**30
            cases.append(row)

    def mib(row, key):
        return f"{row[key] / MIB:.0f}" if key in row else "skipped"

    table = md_table(
        ["song (s)", "decode", "latent frames", "decoder calls", "decode (s)", "peak RSS (MiB)",
         "decode peak (MiB)", "audio out (MiB)", "full size: largest activation", "GiB bf16"],
        [[f"{r['duration_s']:g}", r["mode"], r["frames"], r.get("decoder_calls", "-"),
          f"{r['decode_s']:.2f}" if "decode_s" in r else "skipped", mib(r, "peak_rss_bytes"),
          mib(r, "decode_peak_bytes"), mib(r, "output_bytes"),
          f"{r['full_size_largest_elements']:.3g}" + (" (> 2^31)" if r["full_size_largest_elements"] > 2**31 else ""),
          f"{r['full_size_largest_gib_bf16']:.2f}"] for r in cases],
        align="rllrrrrrrr",
    )
    notes = [
        f"Kit VAE (models/acestep-v15-turbo-kit: the real Oobleck architecture, random weights, 8 channels in "
        f"the decoder's last block where ACE-Step 1.5 has 128), float32 on this CPU, {a.threads} torch "
        "thread(s), in-place decoder (fast_vae_decoder, the engine default); one decode per case in a fresh "
        "process.",
        "decode peak = the child's peak RSS during the decode minus its RSS just before (VmHWM reset with "
        "clear_refs): the decode's own temporaries plus its output. peak RSS adds the loaded process (torch, "
        "the VAE, the latents).",
        f"Tiled: {tile}-frame windows with {MusicArgs().vae_tile_overlap_frames} frames of overlap per side "
        "(the engine defaults): each decoder call sees at most one window, so the decoder's activations stay "
        "those of one tile at any length. What still grows is the audio itself: the decoded tiles are held "
        "until they are joined, so a tiled decode peaks at about one tile's activations plus twice the output.",
        "What this does not show: GPU memory or GPU time. The kit's megabytes are ~1/16 of the full-size "
        "decoder's per second of audio (channel width), and CPU times on a shared 2-core machine are noisy. "
        "The full-size columns are arithmetic (the full-size decoder's shapes on torch's meta device): the "
        "largest single activation of one decoder call, which is what must fit on the GPU (and under 2^31 "
        "elements for kernels indexed with 32-bit integers).",
    ]
    print()
    print("\n".join(table))
    print()
    for n in notes:
        print(f"- {n}")
    path = write_result("decode_memory", {**machine(), "threads": a.threads, "tile_frames": tile,
                                          "overlap_frames": MusicArgs().vae_tile_overlap_frames,
                                          "cases": cases, "table": table, "notes": notes})
    print(f"\nwrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
