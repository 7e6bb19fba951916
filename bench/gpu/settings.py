"""What the GPU benchmark measures: paths, constants, the song it renders, workloads and the runtime."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.common import REPO

CONFIG_DIR = REPO / "bench" / "model_configs"
RESULTS_DIR = REPO / "bench" / "results"
MODELS_DIR = REPO / "models"
PROD_CONFIG = REPO / "configs" / "prod.yaml"

SCHEMA_VERSION = 2
GIB = 2**30
GB = 1e9
LLM_BATCH_TARGET = 3.0  # batch-8 throughput / batch-1 throughput
# Every part, in the order a run takes them. vLLM (llm_engines) starts before any other engine of
# this process has claimed GPU memory; e2e runs last, on its own Ray cluster, after this process has
# handed its cached blocks back.
PARTS = ("codec", "llm_engines", "llm", "music", "music_lengths", "dit", "cover", "cover_vae", "resident", "e2e")
# What `python -m bench.gpu` runs with no --parts. Full size: the issue-13 set, budgeted to < 8 min
# on one H100/H200 (PART_ESTIMATE_S); the older per-engine option sweeps (llm, music, cover,
# resident) stay available with --parts. Reduced (CPU/CI): every part except e2e, which starts a
# Ray cluster (tests/unit/bench/test_gpu.py runs it on its own with --parts e2e).
DEFAULT_PARTS = {
    "full": ("codec", "llm_engines", "music_lengths", "dit", "cover_vae", "e2e"),
    "reduced": ("codec", "llm_engines", "llm", "music", "music_lengths", "dit", "cover", "cover_vae", "resident"),
}
# Expected seconds of each part at full size on one H100/H200 (estimates: no GPU has run this yet;
# see bench/gpu/__init__.py). The run skips a part that would take it past --time-budget-s.
PART_ESTIMATE_S = {
    "setup": 75,  # meta-device parameter counts + ~33 GB of random-weight model folders written
    "codec": 10, "llm_engines": 110, "music_lengths": 45, "dit": 85, "cover_vae": 20, "e2e": 135,
    "llm": 60, "music": 240, "cover": 150, "resident": 60,
}
FULL_TIME_BUDGET_S = 480.0
MUSIC_SPECS = {"xl-turbo": "acestep-v15-xl-turbo", "turbo": "acestep-v15-turbo"}
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
PROD_DTYPES = {"llm": "bfloat16", "music": "bfloat16", "cover": "float16"}

SUBJECTS = [
    "driving through a neon city at night",
    "an old dog waiting at the door for someone who is not coming back",
    "summer love on a crowded beach",
    "a lighthouse keeper who talks to the sea",
    "winning the final game against every prediction",
    "coffee and rain on a slow Sunday morning",
    "leaving a small town for the first time",
    "a letter found inside a second-hand book",
]
SONG_DESCRIPTION = "an upbeat synthwave song about driving through a neon city at night"
SONG_TAGS = "synthwave, upbeat, 118 bpm, analog synth, gated drums, female vocals, night drive"
# Written for this benchmark (~400 LLM tokens): the length a 400-token lyric budget produces.
SONG_LYRICS = """[verse]
Streetlights flicker on the boulevard
Engine humming like a second heart
Radio is playing something we forgot
Every red light turns to green for us tonight
Window down and the city breathing in
Neon letters spelling out our names again
No one's waiting at the end of this road
So we keep on driving where the signals glow

[chorus]
Run, run through the electric night
Hold the wheel and hold me tight
Every mile a little brighter
Every turn a little lighter
Run, run till the morning light
We were made for this midnight ride

[verse]
Billboards shining like a second sun
Shadows racing but they never catch us
Static whispers from a station far away
Telling stories of the ones who couldn't stay
Chrome reflections on the rain-soaked street
Bass line pulsing underneath our feet
If the dawn comes we will let it find us
Leave the quiet of the suburbs far behind us

[chorus]
Run, run through the electric night
Hold the wheel and hold me tight
Every mile a little brighter
Every turn a little lighter
Run, run till the morning light
We were made for this midnight ride

[bridge]
And if the engine fades, if the stars burn out
We will still have the echo of this sound
Turn it up, turn it up, let the skyline shake
Nothing ever breaks when we're wide awake

[chorus]
Run, run through the electric night
Hold the wheel and hold me tight
Every mile a little brighter
Every turn a little lighter
Run, run till the morning light
We were made for this midnight ride

[outro]
Midnight ride, midnight ride
Fading out on the other side
"""


@dataclass(frozen=True)
class Workload:
    llm_new_tokens: int
    song_s: float
    cover_size: int
    repeats: int
    music_steps: int = 8
    cover_steps: int = 1
    llm_batches: tuple[int, ...] = (1, 8)
    cover_batches: tuple[int, ...] = (1, 4)
    # music_lengths: song lengths rendered tiled and untiled, and the tile size (latent frames,
    # 25 per second) of the tiled runs; the reduced size uses small tiles so short songs still tile.
    music_lengths_s: tuple[float, ...] = (30.0, 180.0, 600.0)
    vae_tile_frames: int = 512
    vae_tile_overlap_frames: int = 64
    # llm_engines: songs submitted at once (tags + lyrics + meta each, as the composer does).
    llm_songs: tuple[int, ...] = (1, 8, 32)
    # codec: the length of the stereo 48 kHz song every format encodes.
    codec_song_s: float = 180.0
    # e2e: songs submitted together after the one-song-alone run.
    e2e_concurrent: int = 3


WORKLOADS = {
    "full": Workload(llm_new_tokens=400, song_s=180.0, cover_size=512, repeats=2),
    # Reduced: tiny sizes (seconds per part on 2 CPU cores), the same code.
    # 128 tokens (not 32): the batch-8 prefill and tokenization are fixed costs that 400 tokens
    # amortize at full size; 128 keeps their share comparable.
    "reduced": Workload(llm_new_tokens=128, song_s=10.0, cover_size=256, repeats=5,
                        music_lengths_s=(2.0, 4.0, 8.0), vae_tile_frames=32, vae_tile_overlap_frames=8,
                        llm_songs=(1, 2), codec_song_s=20.0),
}


@dataclass
class Runtime:
    size: str
    device: Any  # torch.device
    threads: int | None
    options: str  # "all" | "baseline"
    music_variant: str
    gpu_gb: float

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def engine_common(self) -> dict[str, Any]:
        return {
            "device": self.device.type if not self.cuda else str(self.device),
            "num_threads": None if self.cuda else self.threads,
            "warmup": False,  # every measurement here does its own warm-up
            "local_files_only": True,
        }
