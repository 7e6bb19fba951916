"""`python -m deployments.weights`: offline verification of the HF cache, and downloads that fetch
only what the engines load. No test touches the network: the hub is either disabled
(HF_HUB_OFFLINE=1), a closed loopback port, or replaced by a fake that writes the cache layout."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
import yaml

from deployments import weights
from deployments.config import PRODUCTION_COVER, PRODUCTION_LLM, PRODUCTION_MUSIC
from deployments.weights import ModelSpec, main, select_files

REPO = Path(__file__).resolve().parents[3]
PROD = "configs/prod.yaml"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
FIX = "python -m deployments.weights download --config configs/prod.yaml"


# ---------------------------------------------------------------- fake hub repos (path -> bytes)


def _json(obj) -> bytes:
    return json.dumps(obj).encode()


def _qwen_repo() -> dict[str, bytes]:
    shards = [f"model-0000{i}-of-00004.safetensors" for i in range(1, 5)]
    bin_shards = ["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"]
    return {
        ".gitattributes": b"*.safetensors filter=lfs\n",
        "LICENSE": b"Apache-2.0\n",
        "README.md": b"# Qwen2-7B-Instruct\n",
        "config.json": _json({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"}),
        "generation_config.json": _json({"do_sample": True}),
        "merges.txt": b"#version: 0.2\n",
        "model.safetensors.index.json": _json({"weight_map": {f"w{i}": s for i, s in enumerate(shards)}}),
        **{s: b"S" * (100 + i) for i, s in enumerate(shards)},
        "pytorch_model.bin.index.json": _json({"weight_map": {"w0": bin_shards[0], "w1": bin_shards[1]}}),
        **{s: b"B" * 50 for s in bin_shards},
        "qwen2-7b-instruct-q4_0.gguf": b"G" * 10,
        "original/consolidated.pth": b"P" * 10,
        "tokenizer.json": _json({"model": {"type": "BPE"}}),
        "tokenizer_config.json": _json({"model_max_length": 32768}),
        "vocab.json": _json({"a": 0}),
    }


def _sdxl_repo() -> dict[str, bytes]:
    files = {
        ".gitattributes": b"",
        "README.md": b"# SDXL-Turbo\n",
        "image.png": b"\x89PNG",
        "sd_xl_turbo_1.0.safetensors": b"F" * 300,  # single-file checkpoints: never needed
        "sd_xl_turbo_1.0_fp16.safetensors": b"H" * 150,
        "model_index.json": _json({
            "_class_name": "StableDiffusionXLPipeline",
            "_diffusers_version": "0.24.0",
            "feature_extractor": [None, None],
            "image_encoder": [None, None],
            "scheduler": ["diffusers", "EulerAncestralDiscreteScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "tokenizer_2": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        }),
        "scheduler/scheduler_config.json": _json({"timestep_spacing": "trailing"}),
    }
    for comp, stem in (("text_encoder", "model"), ("text_encoder_2", "model"),
                       ("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model")):
        files[f"{comp}/config.json"] = _json({"_class_name": comp})
        files[f"{comp}/{stem}.safetensors"] = b"F" * 40
        files[f"{comp}/{stem}.fp16.safetensors"] = b"H" * 20
        files[f"{comp}/model.onnx"] = b"O" * 30
    files["text_encoder_2/model.onnx_data"] = b"O" * 30
    for comp in ("tokenizer", "tokenizer_2"):
        for name in ("merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json"):
            files[f"{comp}/{name}"] = b"{}" if name.endswith(".json") else b"#version: 0.2\n"
    for comp in ("vae_decoder", "vae_encoder"):
        files[f"{comp}/config.json"] = _json({})
        files[f"{comp}/model.onnx"] = b"O" * 30
    return files


def _acestep_repo() -> dict[str, bytes]:
    shards = [f"diffusion_pytorch_model-0000{i}-of-00002.safetensors" for i in (1, 2)]
    return {
        ".gitattributes": b"",
        "README.md": b"# ACE-Step 1.5 XL turbo\n",
        "assets/demo_01.wav": b"RIFF" + b"\0" * 40,
        "examples/sample.mp3": b"ID3" + b"\0" * 40,
        "model_index.json": _json({
            "_class_name": "AceStepPipeline",
            "_diffusers_version": "0.42.0",
            "audio_token_detokenizer": [None, None],
            "audio_tokenizer": [None, None],
            "condition_encoder": ["ace_step", "AceStepConditionEncoder"],
            "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
            "text_encoder": ["transformers", "Qwen3Model"],
            "tokenizer": ["transformers", "Qwen2Tokenizer"],
            "transformer": ["diffusers", "AceStepTransformer1DModel"],
            "vae": ["diffusers", "AutoencoderOobleck"],
        }),
        "condition_encoder/config.json": _json({}),
        "condition_encoder/diffusion_pytorch_model.safetensors": b"C" * 64,
        "condition_encoder/diffusion_pytorch_model.bin": b"c" * 64,  # a duplicate: skipped
        "scheduler/scheduler_config.json": _json({"shift": 3.0}),
        "text_encoder/config.json": _json({"model_type": "qwen3"}),
        "text_encoder/model.safetensors": b"T" * 64,
        "tokenizer/tokenizer.json": _json({}),
        "tokenizer/tokenizer_config.json": _json({}),
        "transformer/config.json": _json({"is_turbo": True}),
        "transformer/diffusion_pytorch_model.safetensors.index.json": _json(
            {"weight_map": {"a": shards[0], "b": shards[1]}}
        ),
        **{f"transformer/{s}": b"D" * 128 for s in shards},
        "vae/config.json": _json({}),
        "vae/diffusion_pytorch_model.bin": b"V" * 64,  # .bin only: it is the weights, so kept
    }


COVER_VAE = "madebyollin/sdxl-vae-fp16-fix"  # configs/prod.yaml's cover.engine.vae


def _vae_repo() -> dict[str, bytes]:
    """The fp16-fix VAE's layout: a diffusers model at the root, plus single-file copies for other tools."""
    return {
        ".gitattributes": b"",
        "README.md": b"# SDXL-VAE-FP16-Fix\n",
        "images/sdxl-vae-fp16-fix-comparison.png": b"\x89PNG",
        "config.json": _json({"_class_name": "AutoencoderKL", "_diffusers_version": "0.18.0",
                              "force_upcast": False, "scaling_factor": 0.13025}),
        "diffusion_pytorch_model.safetensors": b"V" * 80,
        "diffusion_pytorch_model.bin": b"v" * 80,
        "sdxl_vae.safetensors": b"S" * 80,  # for other UIs: diffusers never reads these
        "sdxl.vae.safetensors": b"s" * 80,
        "sdxl_vae.bin": b"b" * 80,
    }


HUB = {PRODUCTION_LLM: _qwen_repo(), PRODUCTION_MUSIC: _acestep_repo(), PRODUCTION_COVER: _sdxl_repo(),
       COVER_VAE: _vae_repo()}
# role, variant, skipped components: as configs/prod.yaml has them (the cover's vae/ comes from COVER_VAE).
ROLE = {PRODUCTION_LLM: ("llm", None, ()), PRODUCTION_MUSIC: ("music", None, ()),
        PRODUCTION_COVER: ("cover", "fp16", ("vae",)), COVER_VAE: ("cover_vae", None, ())}
MODELS_IN_PROD = (PRODUCTION_LLM, PRODUCTION_MUSIC, PRODUCTION_COVER, COVER_VAE)


def cache_repo(cache: Path, repo_id: str, files: dict[str, bytes], tree: dict[str, int] | None = None) -> Path:
    """The huggingface_hub cache layout, by hand: blobs, snapshot symlinks, refs/main, trees/ listing."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    for path, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(path.encode() + data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / COMMIT / path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if tree is not None:  # the listing snapshot_download caches (huggingface_hub's trees/<commit>.json)
        (repo / "trees").mkdir(exist_ok=True)
        listing = {p: {"size": n, "blob_id": hashlib.sha1(p.encode()).hexdigest()} for p, n in tree.items()}
        (repo / "trees" / f"{COMMIT}.json").write_text(json.dumps({"format_version": 1, "files": listing}))
    return repo / "snapshots" / COMMIT


def populate(cache: Path, *, with_tree: bool = False) -> dict[str, Path]:
    """A cache as `download` leaves it: only the selected files of each production repo."""
    out = {}
    for repo_id, files in HUB.items():
        role, variant, skip = ROLE[repo_id]
        wanted = set(select_files(list(files), role, variant, skip))
        tree = {p: len(d) for p, d in files.items()} if with_tree else None
        out[repo_id] = cache_repo(cache, repo_id, {p: d for p, d in files.items() if p in wanted}, tree)
    return out


@pytest.fixture
def hf_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "hf-home"
    home.mkdir()
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(REPO)
    return home


def write_config(path: Path, **engines: dict) -> Path:
    args = {role: {"engine": engine} for role, engine in engines.items()}
    path.write_text(yaml.safe_dump({"applications": [{"name": "songsmith", "import_path": "serve_app.app:build_app",
                                                      "args": args}]}))
    return path


def run_cli(*argv: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_OFFLINE")) and k.lower() not in
             ("http_proxy", "https_proxy", "all_proxy")}
    return subprocess.run([sys.executable, "-m", "deployments.weights", *argv], cwd=REPO, env={**clean, **env},
                          capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- verify


def test_verify_empty_cache_names_each_missing_model_and_the_fix(tmp_path):
    home = tmp_path / "empty-hf-home"
    proc = run_cli("verify", "--config", PROD, env={"HF_HOME": str(home), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for model in MODELS_IN_PROD:
        assert f"model {model} (" in proc.stderr and model in proc.stdout
    assert f"model {COVER_VAE} (cover_vae) is not in the HF cache" in proc.stderr
    assert proc.stderr.count(f"is not in the HF cache at {home / 'hub'}") == 4
    assert proc.stderr.count(f"run `{FIX}` on a machine with network access") == 4
    assert "or mount the cache volume" in proc.stderr
    assert proc.stdout.count("missing") == 4 and "4 of 4 model(s) not ready" in proc.stderr
    assert not home.exists()  # verify never writes


def test_verify_passes_on_a_populated_cache(hf_home, capsys):
    snapshots = populate(hf_home / "hub")
    assert main(["verify", "--config", PROD]) == 0
    out = capsys.readouterr().out
    assert "all 4 model(s) present" in out
    for model, snapshot in snapshots.items():
        row = next(line for line in out.splitlines() if line.split()[1:2] == [model])
        assert " ok " in row and str(snapshot) in row and ("B " in row or "KiB " in row)


def test_cache_location_follows_hf_hub_cache_and_cache_dir(tmp_path, hf_home, capsys, monkeypatch):
    other = tmp_path / "elsewhere"
    populate(other)
    monkeypatch.setenv("HF_HUB_CACHE", str(other))
    assert main(["verify", "--config", PROD]) == 0
    monkeypatch.delenv("HF_HUB_CACHE")
    assert main(["verify", "--config", PROD]) == 1  # $HF_HOME/hub is still empty
    assert main(["verify", "--config", PROD, "--cache-dir", str(other)]) == 0


def test_verify_reports_a_missing_shard(hf_home, capsys):
    snapshots = populate(hf_home / "hub")
    (snapshots[PRODUCTION_LLM] / "model-00003-of-00004.safetensors").resolve().unlink()  # dangling link
    assert main(["verify", "--config", PROD]) == 1
    captured = capsys.readouterr()
    assert "incomplete" in captured.out
    assert f"model {PRODUCTION_LLM} (llm) is incomplete in the HF cache" in captured.err
    assert "model-00003-of-00004.safetensors (listed in model.safetensors.index.json) is missing" in captured.err
    assert FIX in captured.err
    assert "1 of 4 model(s) not ready" in captured.err


def test_verify_reports_a_missing_pipeline_component(hf_home, capsys):
    snapshots = populate(hf_home / "hub")
    for link in (snapshots[PRODUCTION_MUSIC] / "vae").iterdir():
        link.unlink()
    (snapshots[PRODUCTION_MUSIC] / "vae").rmdir()
    assert main(["verify", "--config", PROD]) == 1
    assert "component vae/ (AutoencoderOobleck) is missing" in capsys.readouterr().err


def test_verify_checks_the_weights_variant_the_engine_loads(tmp_path, hf_home, capsys):
    populate(hf_home / "hub")  # SDXL-Turbo: fp16 files only, as `download` fetches them
    fp16 = write_config(tmp_path / "fp16.yaml", cover={"model": PRODUCTION_COVER, "vae": COVER_VAE, "dtype": "float16"})
    assert main(["verify", "--config", str(fp16)]) == 0
    # bf16/fp32 replicas load the full-precision files, which are not in this cache.
    bf16 = write_config(tmp_path / "bf16.yaml", cover={"model": PRODUCTION_COVER, "vae": COVER_VAE,
                                                        "dtype": "bfloat16"})
    assert main(["verify", "--config", str(bf16)]) == 1
    err = capsys.readouterr().err
    assert f"model {PRODUCTION_COVER} (cover) is incomplete" in err and "unet/: no weights" in err


def test_verify_uses_the_cached_listing_for_files_and_sizes(hf_home, capsys):
    import huggingface_hub

    if not hasattr(huggingface_hub, "get_cached_repo_tree"):
        pytest.skip("this huggingface_hub caches no tree listings: the structure checks still apply")
    snapshots = populate(hf_home / "hub", with_tree=True)
    assert main(["verify", "--config", PROD]) == 0
    capsys.readouterr()
    # A tokenizer file the structure check cannot know about, and a truncated weight file.
    (snapshots[PRODUCTION_COVER] / "tokenizer" / "special_tokens_map.json").unlink()
    blob = (snapshots[PRODUCTION_LLM] / "model-00001-of-00004.safetensors").resolve()
    blob.write_bytes(blob.read_bytes()[:10])
    assert main(["verify", "--config", PROD]) == 1
    err = capsys.readouterr().err
    assert "tokenizer/special_tokens_map.json is missing" in err
    assert "model-00001-of-00004.safetensors is truncated (10 of 100 bytes)" in err


def test_local_kits_pass(kits, hf_home, capsys):
    assert main(["verify", "--config", "configs/dev.yaml"]) == 0
    out = capsys.readouterr().out
    assert out.count("local ok") == 3 and "models/acestep-v15-turbo-kit" in out


def test_local_dirs_are_checked(tmp_path, hf_home, capsys):
    good = tmp_path / "llm-kit"
    good.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        (good / name).write_text("{}")
    config = write_config(tmp_path / "local.yaml", llm={"model": str(good)}, music={"model": str(tmp_path / "nope")},
                          cover={"model": str(tmp_path / "nope")})
    assert main(["verify", "--config", str(config)]) == 1
    captured = capsys.readouterr()
    assert "local ok" in captured.out and captured.out.count("local missing") == 2
    assert f"is a local directory that is missing at {tmp_path / 'nope'}" in captured.err
    assert "run `make setup` to build the local kits" in captured.err


# ---------------------------------------------------------------- download


def test_download_offline_fails_fast_with_a_clear_error(tmp_path):
    home = tmp_path / "hf-home"
    started = time.monotonic()
    proc = run_cli("download", "--config", PROD, env={"HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}, timeout=60)
    assert time.monotonic() - started < 30
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "HF_HUB_OFFLINE=1 is set, so downloads are disabled" in proc.stderr
    assert f"HF_HUB_OFFLINE=0 {FIX}" in proc.stderr
    for model in (PRODUCTION_LLM, PRODUCTION_MUSIC, PRODUCTION_COVER):
        assert model in proc.stderr
    assert not home.exists()


def test_download_with_an_unreachable_hub_fails_fast(tmp_path):
    with socket.socket() as s:  # a loopback port nobody listens on: refused at once, no real network
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{port}"}
    proc = run_cli("download", "--config", PROD, env=env, timeout=60)
    assert time.monotonic() - started < 30
    assert proc.returncode == 2
    assert f"cannot reach the Hugging Face hub at http://127.0.0.1:{port}" in proc.stderr
    assert "nothing was fetched" in proc.stderr


def test_download_of_local_kits_needs_no_network(kits, hf_home, capsys):
    assert main(["download", "--config", "configs/dev.yaml"]) == 0  # HF_HUB_OFFLINE=1 does not matter
    out = capsys.readouterr().out
    assert out.count("is a local directory: nothing to download") == 3


def test_download_fetches_only_what_the_engines_load(hf_home, capsys, monkeypatch):
    """The hub replaced by a fake that serves HUB and writes the real cache layout."""
    import huggingface_hub

    calls = {}

    class FakeApi:
        def list_repo_files(self, repo_id, revision=None):
            return list(HUB[repo_id])

    def fake_snapshot_download(repo_id, *, revision, cache_dir, allow_patterns, max_workers):
        calls[repo_id] = allow_patterns
        files = {p: d for p, d in HUB[repo_id].items() if any(fnmatchcase(p, pat) for pat in allow_patterns)}
        return str(cache_repo(Path(cache_dir), repo_id, files))

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)  # a benchmark module imported earlier may set it
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.setattr(weights, "probe_hub", lambda endpoint: None)

    assert main(["download", "--config", PROD]) == 0
    out = capsys.readouterr().out
    assert f"downloading {PRODUCTION_COVER} (fp16 weights)" in out and "all 4 model(s) present" in out
    cover = calls[PRODUCTION_COVER]
    assert all(".fp16." in p for p in cover if p.endswith(".safetensors"))
    assert sum(p.endswith(".safetensors") for p in cover) == 3  # text_encoder(_2), unet: the VAE comes from COVER_VAE
    assert not any(p.startswith("vae/") for p in cover)
    assert calls[COVER_VAE] == ["config.json", "diffusion_pytorch_model.safetensors"]
    assert not any(p.endswith((".onnx", ".onnx_data", ".png", ".md")) or "/" not in p and p != "model_index.json"
                   for p in cover)
    assert not any(p.endswith((".bin", ".gguf", ".pth", ".md")) or "/" in p for p in calls[PRODUCTION_LLM])
    music = calls[PRODUCTION_MUSIC]
    assert "vae/diffusion_pytorch_model.bin" in music and "condition_encoder/diffusion_pytorch_model.bin" not in music
    assert not any(p.endswith((".wav", ".mp3")) for p in music)


# ---------------------------------------------------------------- file selection


def test_select_files_sdxl_turbo_fp16_only():
    files = list(HUB[PRODUCTION_COVER])
    picked = select_files(files, "cover", "fp16")
    assert picked == sorted([
        "model_index.json", "scheduler/scheduler_config.json",
        "text_encoder/config.json", "text_encoder/model.fp16.safetensors",
        "text_encoder_2/config.json", "text_encoder_2/model.fp16.safetensors",
        *[f"{t}/{n}" for t in ("tokenizer", "tokenizer_2")
          for n in ("merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json")],
        "unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/config.json", "vae/diffusion_pytorch_model.fp16.safetensors",
        "vae_decoder/config.json", "vae_encoder/config.json",
    ])
    full = select_files(files, "cover", None)  # a bf16/fp32 replica: the plain files, still no duplicates
    weights_full = [p for p in full if p.endswith(".safetensors")]
    assert len(weights_full) == 4 and not any(".fp16." in p for p in weights_full)


def test_select_files_llm_and_acestep():
    llm = select_files(list(HUB[PRODUCTION_LLM]), "llm")
    assert llm == sorted([
        "config.json", "generation_config.json", "merges.txt", "model.safetensors.index.json",
        *[f"model-0000{i}-of-00004.safetensors" for i in range(1, 5)],
        "tokenizer.json", "tokenizer_config.json", "vocab.json",
    ])
    music = select_files(list(HUB[PRODUCTION_MUSIC]), "music")
    assert "transformer/diffusion_pytorch_model.safetensors.index.json" in music
    assert "vae/diffusion_pytorch_model.bin" in music
    skipped = {"assets/demo_01.wav", "examples/sample.mp3", "condition_encoder/diffusion_pytorch_model.bin"}
    assert not skipped & set(music)


def test_select_files_prefers_safetensors_and_keeps_bin_only_weights():
    files = ["config.json", "pytorch_model.bin", "model.safetensors", "tokenizer.json"]
    assert select_files(files, "llm") == ["config.json", "model.safetensors", "tokenizer.json"]
    assert select_files(["config.json", "pytorch_model.bin"], "llm") == ["config.json", "pytorch_model.bin"]


# ---------------------------------------------------------------- config handling


def test_specs_from_the_prod_config_and_defaults(tmp_path):
    specs = weights.load_specs(REPO / PROD)
    assert specs == [ModelSpec("llm", PRODUCTION_LLM), ModelSpec("music", PRODUCTION_MUSIC),
                     ModelSpec("cover", PRODUCTION_COVER, "fp16", skip=("vae",)), ModelSpec("cover_vae", COVER_VAE)]
    assert weights.load_specs(REPO / "configs/prod-multi-gpu.yaml") == specs
    assert weights.load_specs(REPO / PROD, "songsmith") == specs  # --app by name
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump({"applications": [{"import_path": "serve_app.app:build_app"}]}))
    assert [s.model for s in weights.load_specs(bare)] == [PRODUCTION_LLM, PRODUCTION_MUSIC, PRODUCTION_COVER]
    with_base = tmp_path / "with-base.yaml"  # a second music deployment's checkpoint is fetched too
    with_base.write_text(yaml.safe_dump({"applications": [{"import_path": "serve_app.app:build_app", "args": {
        "music_base": {"engine": {"model": "ACE-Step/acestep-v15-xl-base-diffusers"}}}}]}))
    assert [(s.role, s.model) for s in weights.load_specs(with_base)][-1] == (
        "music_base", "ACE-Step/acestep-v15-xl-base-diffusers")
    assert weights.select_files(["model_index.json", "transformer/config.json", "samples/a.wav"], "music_base") == [
        "model_index.json", "transformer/config.json"]  # what the music engine loads, as for `music`


def test_config_errors_exit_2(tmp_path, hf_home, capsys):
    assert main(["verify", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["verify", "--config", PROD, "--app", "7"]) == 2
    assert "has 1 application(s)" in capsys.readouterr().err
    typo = write_config(tmp_path / "typo.yaml", llm={"model": PRODUCTION_LLM, "modle_dtype": "bf16"})
    assert main(["verify", "--config", str(typo)]) == 2
    assert "llm.engine" in capsys.readouterr().err


def test_import_and_verify_stay_cheap(kits):
    code = (
        "import sys, json; from deployments.weights import main; rc = main(['verify', '--config', 'configs/dev.yaml']);"
        "print(json.dumps({'rc': rc, 'heavy': sorted(m for m in ('torch', 'ray', 'transformers', 'diffusers')"
        " if m in sys.modules)}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"rc": 0, "heavy": []}


# ---------------------------------------------------------------- "ok" means loadable


def test_a_cache_verify_accepts_loads_offline_in_the_real_libraries(kits, hf_home, tmp_path):
    """The kits, laid out as hub repos by hand: verify says ok, and transformers/diffusers load them
    offline the way the engines do (SDXL as the fp16 variant)."""
    import torch  # noqa: F401  (heavy: only this test)
    from diffusers import AceStepPipeline, StableDiffusionXLPipeline
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def repo_files(kit: str, rename=lambda rel: rel) -> dict[str, bytes]:
        root = REPO / "models" / kit
        return {rename(p.relative_to(root).as_posix()): p.read_bytes()
                for p in root.rglob("*") if p.is_file() and p.name != "kit.json"}

    cache = hf_home / "hub"
    cache_repo(cache, "kits/qwen2-tiny", repo_files("qwen2-tiny-kit"))
    cache_repo(cache, "kits/acestep", repo_files("acestep-v15-turbo-kit"))
    fp16 = lambda rel: rel.replace(".safetensors", ".fp16.safetensors")  # noqa: E731
    cache_repo(cache, "kits/sdxl", repo_files("sdxl-turbo-kit", fp16))
    config = write_config(tmp_path / "kits.yaml", llm={"model": "kits/qwen2-tiny"}, music={"model": "kits/acestep"},
                          cover={"model": "kits/sdxl", "dtype": "float16"})
    assert main(["verify", "--config", str(config)]) == 0

    # cache_dir explicitly: huggingface_hub froze HF_HOME when some earlier test imported it.
    offline = {"local_files_only": True, "cache_dir": str(cache)}
    assert AutoModelForCausalLM.from_pretrained("kits/qwen2-tiny", **offline) is not None
    assert AutoTokenizer.from_pretrained("kits/qwen2-tiny", **offline) is not None
    assert AceStepPipeline.from_pretrained("kits/acestep", **offline).transformer is not None
    sdxl = StableDiffusionXLPipeline.from_pretrained("kits/sdxl", variant="fp16", add_watermarker=False, **offline)
    assert sdxl.unet is not None


# ---------------------------------------------------------------- the cover's separate VAE


def test_select_files_for_the_fp16_fix_vae_and_the_pipeline_without_its_vae():
    assert select_files(list(HUB[COVER_VAE]), "cover_vae") == ["config.json", "diffusion_pytorch_model.safetensors"]
    assert select_files(["config.json", "diffusion_pytorch_model.bin", "sdxl_vae.safetensors"], "cover_vae") == [
        "config.json", "diffusion_pytorch_model.bin"]  # .bin only: it is the weights diffusers reads
    without_vae = select_files(list(HUB[PRODUCTION_COVER]), "cover", "fp16", ("vae",))
    assert without_vae == [p for p in select_files(list(HUB[PRODUCTION_COVER]), "cover", "fp16")
                           if not p.startswith("vae/")]


def test_verify_checks_the_separate_vae_and_skips_the_pipelines(tmp_path, hf_home, capsys):
    snapshots = populate(hf_home / "hub")  # as download leaves it: sdxl-turbo without vae/
    assert not (snapshots[PRODUCTION_COVER] / "vae").exists()
    assert main(["verify", "--config", PROD]) == 0
    capsys.readouterr()
    # Without cover.engine.vae the pipeline's own vae/ is needed again.
    own = write_config(tmp_path / "own-vae.yaml", cover={"model": PRODUCTION_COVER, "dtype": "float16"})
    assert main(["verify", "--config", str(own)]) == 1
    assert "component vae/ (AutoencoderKL) is missing" in capsys.readouterr().err
    # The VAE's weights missing: named, and where the config sets it.
    (snapshots[COVER_VAE] / "diffusion_pytorch_model.safetensors").unlink()
    assert main(["verify", "--config", PROD]) == 1
    err = capsys.readouterr().err
    assert f"model {COVER_VAE} (cover_vae) is incomplete" in err and "no weights" in err


def test_a_local_vae_dir_is_checked_as_a_diffusers_model(tmp_path, hf_home, capsys):
    vae = tmp_path / "vae"
    vae.mkdir()
    (vae / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    (vae / "sdxl_vae.safetensors").write_bytes(b"S")  # a single-file copy: not what diffusers loads
    config = write_config(tmp_path / "local-vae.yaml", cover={"model": "models/sdxl-turbo-kit", "vae": str(vae)})
    assert main(["verify", "--config", str(config), "--app", "0"]) == 1
    captured = capsys.readouterr()
    assert "fix cover.engine.vae in" in captured.err
    (vae / "diffusion_pytorch_model.safetensors").write_bytes(b"V")
    assert main(["verify", "--config", str(config)]) in (0, 1)  # the LLM/music defaults are hub ids (not cached)
    assert "cover_vae" in capsys.readouterr().out
    assert weights.check_model_dir(vae) == []  # no tokenizer wanted: it is not a transformers model


@pytest.mark.models  # loads the real diffusers pipeline (~30 s here): not in make test-fast
def test_a_pipeline_cached_without_its_vae_loads_offline_with_the_separate_one(kits, hf_home, tmp_path):
    """What `download` leaves for configs/prod.yaml's cover (sdxl-turbo fp16 without vae/, the VAE repo
    at the root) passes verify and loads offline the way deployments/cover.py loads it."""
    import torch  # noqa: F401  (heavy: only this test)
    from diffusers import AutoencoderKL, AutoPipelineForText2Image

    root = REPO / "models" / "sdxl-turbo-kit"
    kit = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file() and p.name != "kit.json"}
    pipeline = {rel.replace(".safetensors", ".fp16.safetensors"): d for rel, d in kit.items() if not rel.startswith("vae/")}
    vae = {rel.removeprefix("vae/"): d for rel, d in kit.items() if rel.startswith("vae/")}
    cache = hf_home / "hub"
    cache_repo(cache, "kits/sdxl", pipeline)
    cache_repo(cache, "kits/sdxl-vae-fp16-fix", vae)
    config = write_config(tmp_path / "kits.yaml", llm={"model": "models/qwen2-tiny-kit"},
                          music={"model": "models/acestep-v15-turbo-kit"},
                          cover={"model": "kits/sdxl", "vae": "kits/sdxl-vae-fp16-fix", "dtype": "float16"})
    assert main(["verify", "--config", str(config)]) == 0
    offline = {"local_files_only": True, "cache_dir": str(cache)}
    separate = AutoencoderKL.from_pretrained("kits/sdxl-vae-fp16-fix", **offline)
    pipe = AutoPipelineForText2Image.from_pretrained("kits/sdxl", variant="fp16", vae=separate, add_watermarker=False,
                                                     **offline)
    assert type(pipe).__name__ == "StableDiffusionXLPipeline" and pipe.vae is separate
