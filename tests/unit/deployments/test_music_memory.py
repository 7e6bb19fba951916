"""A CPU music replica's memory stays bounded however many song lengths it renders.

Each song length is a new set of shapes for oneDNN, and its primitive cache (1024 entries by
default) kept them all: ~130 MB more per minute of audio of every new length on the dev kit.
The music engine caps the cache (`onednn_cache_capacity: 128`, about the last two lengths).
oneDNN reads the setting once per process, so each case runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from serve_app.localdev.cluster import MODELS, REPO

pytestmark = pytest.mark.models  # runs real model code on the kits: the slower unit tests

SCRIPT = """
import json, sys
from deployments.config import MusicArgs
from deployments.memory import release_free_memory
from deployments.music import MusicEngine, MusicRequest

def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))

kw = json.loads(sys.argv[2])
engine = MusicEngine(MusicArgs(model=sys.argv[1], num_threads=1, **kw))
idle = rss()
for seconds in (40.0, 35.0, 30.0, 25.0, 20.0, 15.0):
    engine.generate(MusicRequest(tags="rock", lyrics="[verse]\\nhello", duration_s=seconds, steps=2, seed=1))
release_free_memory()  # what a replica does once idle: count what is still held, not freed heap
print(json.dumps({"grew": rss() - idle}))
"""


def _growth(kits, **kw) -> int:
    # An engine built earlier in this process set the variable; the child must start without it.
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(MODELS / "acestep-v15-turbo-kit"), json.dumps(kw)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["grew"]


def test_memory_kept_stays_bounded_over_many_song_lengths(kits):
    unbounded = _growth(kits, onednn_cache_capacity=None)  # oneDNN's default cache
    capped = _growth(kits)  # the music engine's default
    off = _growth(kits, onednn_cache_capacity=0)
    print(f"\nRSS kept after 6 song lengths: {capped / 2**20:.0f} MiB capped, {unbounded / 2**20:.0f} MiB with "
          f"oneDNN's default cache, {off / 2**20:.0f} MiB without a cache")
    assert unbounded > 150 * 2**20, unbounded  # the growth is real on this machine
    assert capped < 0.5 * unbounded, (capped, unbounded)
    assert off < 0.25 * unbounded, (off, unbounded)
