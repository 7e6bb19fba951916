"""Full-size benchmark of the three production models, with random weights (nothing is downloaded).

THE one GPU command (one H100/H200, ~7.5 min estimated, under the 8 min budget):

    .venv/bin/python -m bench.gpu

Builds each production architecture from configs transcribed into `bench/model_configs/*.json`
(Qwen2-7B-Instruct, ACE-Step 1.5 XL turbo, SDXL-Turbo), saves it with `save_pretrained` into a
model directory, loads it through the project's own engines and deployments (the code the Serve
replicas run) and, by default at full size, measures what a CPU cannot. Estimated seconds per part
on one H100/H200 (`settings.PART_ESTIMATE_S`; NOT yet measured: no GPU has run this version):

* setup (~75 s): full-size parameter counts on the meta device (checked against published sizes)
  and ~33 GB of random-weight model folders written to a temp dir (or `--models-dir`, reused).
* `codec` (~10 s, CPU): encode seconds per format (wav/flac/mp3/opus) of a 180 s stereo 48 kHz
  song through `deployments.audio_codec.encode`.
* `llm_engines` (~110 s): tok/s and time to lyrics, vLLM vs the transformers engine, at 1/8/32
  songs at once (tags + lyrics + meta per song, as the composer submits them; bench.llm_engines'
  code), configs/prod.yaml's llm block. vLLM runs first, before anything else claims GPU memory
  (~60 s start: weights, torch.compile, CUDA graphs; then ~35 s of songs). Each engine's song runs
  get 60 s: the transformers engine samples seeded requests one at a time, so its 8/32-song levels
  are recorded as skipped with a linear estimate once they would not fit.
* `music_lengths` (~45 s): render and VAE-decode seconds and peak GPU memory at 30/180/600 s,
  tiled vs untiled decode (MusicArgs `vae_tiling`); an untiled song that runs out of memory or past
  2^31 elements records its error as the result.
* `dit` (~85 s): the DiT's attention (torch SDPA switches, diffusers' dispatcher, the SDPA kernels
  one profiled step ran) and per-step time eager vs `torch_compile: true` (compile time apart).
* `cover_vae` (~20 s): cover latency, stock SDXL VAE (fp32 upcast in fp16) vs the fp16-fix VAE
  (a random-weight stand-in of the same config with force_upcast false: the output says so).
* `e2e` (~135 s): the real app (`serve_app.app:build_app`, prod.yaml args, one replica per model:
  three processes on one GPU) on a local Ray Serve: deploy, a warm-up song, one song alone, then
  three at once; each replica process's peak GPU memory (nvidia-smi) and RSS.
* budget: configs/prod.yaml's `num_gpus` shares against the weights and the measured peaks.

A part whose estimate would take the run past `--time-budget-s` (480 s at full size) is skipped
and says so. The older per-engine sweeps run with `--parts` (or `--parts all`): `llm` (tokens/s at
batch 1 and 8, target >= 3x), `music` and `cover` (dtype, torch.compile, CPU offload, each engine's
own speed option), `resident` (all three engines in one process, one song through the composer).

On a machine without CUDA the same code runs at a reduced size (`--size reduced`, the default there):
small configs from the same JSON files, short songs, short LLM budgets, 256x256 covers, so every
part takes seconds and CI runs it (tests/unit/bench/test_gpu.py). Its default is every part but
e2e (which starts a Ray cluster; the test runs it on its own with `--parts e2e`); what needs CUDA
(vLLM on a GPU, torch.compile, nvidia-smi) records `{"skipped": "<reason>"}`.

    # CPU / CI (reduced size, ~2 min on 2 busy cores):
    .venv/bin/python -m bench.gpu --size reduced --device cpu
    # GPU, split into shorter commands that reuse the folders and merge into one JSON:
    D=/tmp/songsmith-bench-models
    .venv/bin/python -m bench.gpu --models-dir $D --parts codec,llm_engines,music_lengths
    .venv/bin/python -m bench.gpu --models-dir $D --parts dit,cover_vae,e2e --merge

Writes `bench/results/gpu_full_size-<device>.json` (or `--out`) and prints a Markdown report.

One module per measurement: `codec`, `llm_engines`, `music_lengths`, `dit`, `cover_vae`, `e2e`,
`llm`, `music`, `cover`, `resident` (`song`: one song through the composer), `budget`, `params`;
`configs`, `modules` and `model_dirs` build the random-weight models, `variants` the engine options,
`measure` the clocks and memory readings, `report` the Markdown, `cli` the command (`__main__`).
"""

import os

# Before transformers is imported anywhere (every heavy import here is inside a function).
# bench/__init__.py sets the offline hub, Ray auth and usage-stats defaults of every benchmark.
for _k, _v in {"TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_k, _v)
