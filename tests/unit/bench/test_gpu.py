"""bench/gpu (`python -m bench.gpu`) in its CPU mode: the same code as the GPU benchmark at a reduced size.

One run of `python -m bench.gpu --size reduced --device cpu` (a subprocess, one torch thread)
builds every model folder, loads it through the project's engines and measures them; the tests
read its JSON. The full-size parameter counts in it come from models built on the meta device.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.models  # runs real model code on the kits: the slower unit tests

REPO = Path(__file__).resolve().parents[3]

# Published full-size parameter counts (model cards / reports), independent of bench/model_configs.
PUBLISHED = {
    "llm": 7_615_616_512,  # Qwen2-7B-Instruct: 7.62B
    "cover.unet": 2_567_463_684,  # SDXL UNet: 2.57B
    "cover.text_encoder": 123_060_480,  # CLIP ViT-L/14 text
    "cover.text_encoder_2": 694_659_840,  # OpenCLIP ViT-bigG/14 text + projection
    "cover.vae": 83_653_863,  # SDXL VAE
    "music.text_encoder": 595_776_512,  # Qwen3-Embedding-0.6B
}
# ACE-Step 1.5 XL turbo DiT "per the config" (hidden 2560, 32 layers, 32/8 heads, MLP 9728, encoder 2048).
ACESTEP_XL_DIT = 4_168_897_088
ACESTEP_XL_NOMINAL = 4.0e9  # "XL (4B DiT)", ACE-Step 1.5 v0.1.6 release notes


def _run(args: list[str], out: Path, timeout: float) -> tuple[dict, str, float]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "bench.gpu", *args, "--out", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    wall = time.monotonic() - t0
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return json.loads(out.read_text()), proc.stdout, wall


@pytest.fixture(scope="module")
def run(kits, tmp_path_factory) -> tuple[dict, str, float]:
    out = tmp_path_factory.mktemp("gpu-bench") / "gpu_full_size-cpu-reduced.json"
    return _run(["--size", "reduced", "--device", "cpu", "--threads", "1"], out, timeout=600)


@pytest.fixture(scope="module")
def report(run) -> dict:
    return run[0]


def test_cpu_mode_runs_end_to_end_quickly(run):
    report, _, wall = run
    assert report["size"] == "reduced" and report["device"]["type"] == "cpu"
    assert report["errors"] == []
    assert wall < 150, f"the CPU mode took {wall:.0f} s"  # ~40 s on 2 busy cores


def test_report_has_every_field(report):
    for key in ("schema", "date", "git", "device", "versions", "size", "settings", "param_counts",
                "weights_estimate_bytes", "results", "budget", "targets", "wall_s"):
        assert key in report, key
    assert report["git"]["commit"] and len(report["git"]["commit"]) == 40
    assert report["device"]["name"]
    for lib in ("torch", "diffusers", "transformers", "python"):
        assert report["versions"][lib], lib
    s = report["settings"]
    assert (s["llm_new_tokens"], s["song_s"], s["music_steps"], s["cover_size"], s["cover_steps"]) == (128, 10.0, 8, 256, 1)
    assert tuple(s["llm_batches"]) == (1, 8) and tuple(s["cover_batches"]) == (1, 4)

    llm = report["results"]["llm"]
    for b in ("1", "8"):
        row = llm["batches"][b]
        assert row["tokens"] == int(b) * 128 and row["tokens_per_s"] > 0 and row["best_s"] > 0
    assert llm["load_s"] >= 0 and llm["all_rows_full_budget"] is True

    music = report["results"]["music"]
    base = music["variants"][music["baseline"]]
    assert base["rtf"] > 0 and base["render_s"] > 0 and base["load_s"] > 0
    assert base["audio"]["duration_s"] == pytest.approx(10.0, abs=0.05) and base["audio"]["sample_rate"] == 48000
    assert "bfloat16" in music["variants"] and music["skipped"]  # dtype measured; compile/offload need CUDA
    assert music["rtf"] == base["rtf"]
    plain = music["variants"]["float32+diffusers_vae_decoder"]  # the engine's decoder speed-up, measured off
    assert plain["engine_options"] == {"fast_vae_decoder": False} and plain["render_s"] > 0
    assert base["engine_options"] == {}

    cover = report["results"]["cover"]
    base = cover["variants"][cover["baseline"]]
    for b in ("1", "4"):
        assert base["batches"][b]["latency_s"] > 0 and base["batches"][b]["size"] == [256, 256]
    assert set(cover["latency_s"]) == {"1", "4"}
    assert cover["variants"]["float32+contiguous_layout"]["engine_options"] == {"channels_last": False}

    res = report["results"]["resident"]
    song = res["song_engines"]
    assert song["total_s"] >= song["words_s"] > 0 and song["music_s"] > 0 and song["cover_s"] > 0
    assert set(res["engines"]) == {"llm", "music", "cover"}

    # GPU memory fields exist (None without CUDA); the budget rows come from configs/prod.yaml.
    for part in ("llm", "music", "cover"):
        assert "peak_bytes" in report["results"][part]
    rows = report["budget"]["rows"]
    assert report["budget"]["shares"] == {"llm": 0.25, "music": 0.35, "cover": 0.15}
    for part in ("llm", "music", "cover", "all"):
        assert rows[part]["budget_bytes"] > 0 and rows[part]["weights_estimate_bytes"] > 0
        assert rows[part]["weights_fit"] is True  # full-size weights alone fit each share


def test_default_gpu_parts_run_at_reduced_size(report):
    """The issue-13 parts of the default full-size run, at tiny sizes; CUDA-only pieces say skipped."""
    r = report["results"]
    codec = r["codec"]
    assert set(codec["formats"]) == {"wav", "flac", "mp3", "opus"}
    assert all(x["encode_s"] > 0 and x["bytes"] > 0 for x in codec["formats"].values())

    le = r["llm_engines"]
    assert "skipped" in le["engines"]["vllm"]  # vLLM on a GPU only here
    tf = le["engines"]["transformers"]
    assert set(tf["runs"]) == {"1", "2"}
    for run in tf["runs"].values():
        assert run["tok_s"] > 0 and run["lyrics_p50_s"] > 0 and run["tokens"] > 0

    ml = r["music_lengths"]
    assert set(ml["lengths"]) == {"2", "4", "8"}
    for row in ml["lengths"].values():
        for mode in ("tiled", "untiled"):
            x = row[mode]
            assert x["render_s"] > 0 and x["decode_s"] > 0 and "peak_bytes" in x, (mode, x)
            assert x["audio_s"] == pytest.approx(row["song_s"], abs=0.05)

    dit = r["dit"]
    assert set(dit["sdpa"]) >= {"flash_sdp_enabled", "mem_efficient_sdp_enabled", "is_flash_attention_available"}
    assert dit["dispatch"]["active_backend"] and dit["sdpa_kernels"]
    assert dit["eager"]["step_s"] > 0 and len(dit["eager"]["step_samples_s"]) == 7
    assert "skipped" in dit["compiled"]

    cv = r["cover_vae"]
    assert set(cv["variants"]) == {"stock", "fp16_fix"} and "stand-in" in cv["fp16_fix_vae"]
    assert cv["variants"]["stock"]["force_upcast"] is True and cv["variants"]["fp16_fix"]["force_upcast"] is False
    assert cv["latency_s"]["fp16_fix"]["1"] > 0 and cv["latency_s"]["stock"]["1"] > 0
    assert "e2e" not in r  # reduced default: e2e runs in test_e2e_song_through_the_real_app
    assert set(report["settings"]["parts"]) >= {"codec", "llm_engines", "music_lengths", "dit", "cover_vae"}


def test_full_size_parameter_counts_match_published_sizes(report):
    counts = report["param_counts"]
    for key, published in PUBLISHED.items():
        assert counts[key]["params"] == pytest.approx(published, rel=0.02), key
    assert counts["llm"]["params"] == pytest.approx(7.6e9, rel=0.02)
    assert counts["cover.unet"]["params"] == pytest.approx(2.57e9, rel=0.02)
    dit = counts["music.transformer"]
    assert dit["params"] == pytest.approx(ACESTEP_XL_DIT, rel=0.02)
    assert dit["params"] == dit["formula_params"]  # diffusers' module == the closed form of the config
    assert dit["params"] == pytest.approx(ACESTEP_XL_NOMINAL, rel=0.05)
    assert all(r["ok"] for r in counts.values() if r["checked"])
    assert report["targets"]["param_counts_within_2pct"]["met"] is True


def test_llm_batch8_throughput_is_at_least_3x_batch1(report):
    llm = report["results"]["llm"]
    assert llm["throughput_ratio"] >= 3.0, llm["batches"]
    assert llm["meets_target"] is True and report["targets"]["llm_batch8_over_batch1"]["met"] is True


def test_markdown_report_is_printed(run):
    _, stdout, _ = run
    for heading in ("## Parameter counts", "## LLM", "## Music", "## Cover", "## All three resident",
                    "## Memory budget", "## Targets", "## Audio encode", "## LLM engines", "## Music by song length",
                    "## DiT: attention", "## Cover VAE"):
        assert heading in stdout, heading
    assert "| 8 | 1024 |" in stdout  # the batch-8 row of the LLM table


@pytest.mark.serve
def test_e2e_song_through_the_real_app(kits, tmp_path):
    """e2e: build_app with configs/prod.yaml's args on a local Ray Serve: one song alone, then 3 at once,
    with each replica process's memory sampled (GPU memory needs nvidia-smi: skipped on CPU)."""
    report, _, _ = _run(["--size", "reduced", "--device", "cpu", "--threads", "1", "--parts", "e2e"],
                        tmp_path / "e2e.json", timeout=600)
    e2e = report["results"]["e2e"]
    assert e2e["status"] == 200 and e2e["endpoint"] == "/generate-from-description"
    assert e2e["audio_duration_s"] == pytest.approx(10.0, abs=0.05)
    assert e2e["request_s"] > 0 and "music" in e2e["timings"]
    assert e2e["alone"]["wall_s"] == e2e["request_s"]
    c = e2e["concurrent"]
    assert c["songs"] == 3 and len(c["each_s"]) == 3 and c["wall_s"] >= max(c["each_s"]) > 0
    procs = e2e["processes"]
    assert {"LLM", "Music", "Cover"} <= set(procs["per_deployment"])
    assert all(x["rss_peak_bytes"] > 0 for x in procs["per_deployment"].values())
    assert "skipped" in procs["gpu_memory"]
