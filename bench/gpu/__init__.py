"""Full-size benchmark of the three production models, with random weights (nothing is downloaded).

Builds each production architecture from configs transcribed into `bench/model_configs/*.json`
(Qwen2-7B-Instruct, ACE-Step 1.5 XL turbo, SDXL-Turbo), saves it with `save_pretrained` into a
model directory, loads it through the project's own engines (`deployments.llm.LLMEngine`,
`deployments.music.MusicEngine`, `deployments.cover.CoverEngine`, the code the Serve replicas run)
and measures:

* LLM: tokens/s writing a 400-token lyric at batch 1 and batch 8 (greedy, every row forced to its
  full budget with `min_new_tokens`), and the batch-8 / batch-1 throughput ratio (target >= 3x).
* Music: real-time factor of a 180 s song at 8 steps (render seconds / 180).
* Cover: latency of a 512x512 image at 1 step, batch 1 and batch 4.
* Engine options: dtype (bf16 vs fp16), `torch.compile` of the DiT / UNet (compile time apart),
  diffusers model CPU offload (latency and peak memory for small GPUs), and each engine's own
  speed option switched off: music `fast_vae_decoder` (diffusers' Oobleck decoder), cover
  `channels_last` (default memory layout).
* Peak GPU memory (`torch.cuda.max_memory_allocated` after a reset) of each engine, and of all
  three resident on one GPU running one song, checked against configs/prod.yaml's `num_gpus`
  shares of an 80 GB GPU.
* Optionally (`--e2e`) one song through the real app: `serve_app.app:build_app` with
  configs/prod.yaml's args (model dirs swapped for the random-weight ones, local storage) on a
  local Ray Serve, timing one `POST /generate-with-lyrics`.

Full-size parameter counts are always computed (models built on the meta device) and checked
against the published sizes, on any machine.

On a machine without CUDA the same code runs at a reduced size (`--size reduced`, the default there):
small configs from the same JSON files, a 10 s song, 128 LLM tokens, 256x256 covers, so every part
takes seconds and CI runs it (tests/unit/bench/test_gpu.py).

    # On a GPU node (CUDA: full size is the default). Smoke-test the plumbing first (~1 min):
    .venv/bin/python -m bench.gpu --size reduced
    # Everything at full size (~33 GB of model folders go to a temp dir; roughly 10-15 min on an
    # H100, most of it folder writes, model loads and torch.compile):
    .venv/bin/python -m bench.gpu
    # ...or split into shorter commands that reuse the folders and merge into one JSON:
    D=/tmp/songsmith-bench-models
    .venv/bin/python -m bench.gpu --models-dir $D --parts llm,resident
    .venv/bin/python -m bench.gpu --models-dir $D --parts music --merge
    .venv/bin/python -m bench.gpu --models-dir $D --parts cover --merge
    .venv/bin/python -m bench.gpu --models-dir $D --parts none --e2e --merge
    # CPU / CI (reduced size, ~40 s on 2 cores):
    .venv/bin/python -m bench.gpu --size reduced --device cpu

Writes `bench/results/gpu_full_size-<device>.json` (or `--out`) and prints a Markdown report.

One module per measurement: `llm`, `music`, `cover`, `resident` (all three engines in one process,
one song: `song`), `e2e`, `budget` (configs/prod.yaml's shares), `params` (full-size counts);
`configs`, `modules` and `model_dirs` build the random-weight models, `variants` the engine options,
`measure` the clocks and memory readings, `report` the Markdown, `cli` the command (`__main__`).
"""

import os

# Before transformers is imported anywhere (every heavy import here is inside a function).
# bench/__init__.py sets the offline hub, Ray auth and usage-stats defaults of every benchmark.
for _k, _v in {"TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_k, _v)
