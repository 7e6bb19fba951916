"""Benchmarks (docs/performance.md): `python -m bench.gpu`, `python -m bench.song_path`,
`python -m bench.throughput`, `python -m bench.idle_memory`, run from the repository root.

Every benchmark runs offline, without Ray's token auth or usage stats (defaults only: the
environment wins).
"""

import os

for _k, _v in {"HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}.items():
    os.environ.setdefault(_k, _v)
