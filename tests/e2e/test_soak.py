"""Soak: 200 songs at concurrency 16 on the dev stack with the kits: none lost, no 5xx, and the
memory of every replica process bounded (printed at start and end)."""

from __future__ import annotations

import concurrent.futures as cf
import time

import httpx
import pytest

pytestmark = pytest.mark.serve

SONGS, CONCURRENCY = 200, 16


def replica_rss(serve_cluster) -> dict[str, int]:
    out = {}
    for a in serve_cluster.actors("SERVE_REPLICA::songsmith#"):
        try:
            with open(f"/proc/{a.pid}/status") as f:
                rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
            out[a.name.split("#", 1)[1]] = rss
        except (OSError, StopIteration):
            pass
    return out


def test_soak(song_api, serve_cluster):
    headers = {"Authorization": f"Bearer {song_api['token']}"}
    base = song_api["base_url"]
    before = replica_rss(serve_cluster)
    retries_429 = 0

    def one(i: int) -> tuple[int, str]:
        nonlocal retries_429
        body = {"prompt": "pop", "lyrics": f"[verse]\nsong number {i}", "audio_duration": 10.0, "infer_step": 1,
                "seed": i}
        for _ in range(200):
            r = httpx.post(base + "/generate-with-lyrics", json=body, headers=headers, timeout=300)
            if r.status_code != 429:
                return r.status_code, r.json().get("song_id", "") if r.status_code == 200 else r.text[:200]
            retries_429 += 1  # backpressure: a polite client waits as told and tries again
            time.sleep(min(float(r.headers.get("retry-after", "1")), 2.0))
        return 429, "gave up"

    t0 = time.monotonic()
    with cf.ThreadPoolExecutor(CONCURRENCY) as pool:
        answers = list(pool.map(one, range(SONGS)))
    wall = time.monotonic() - t0
    after = replica_rss(serve_cluster)
    print(f"\nsoak: {SONGS} songs at concurrency {CONCURRENCY} in {wall:.0f}s ({60 * SONGS / wall:.0f}/min), "
          f"{retries_429} polite retries after 429")
    for name in sorted(before):
        print(f"  {name:40s} RSS {before[name] / 2**20:7.0f} MiB -> {after.get(name, 0) / 2**20:7.0f} MiB")
    codes = [c for c, _ in answers]
    assert codes == [200] * SONGS, [a for a in answers if a[0] != 200][:5]
    assert len({sid for _, sid in answers}) == SONGS  # every song its own, none lost or merged
    for name, rss in before.items():
        assert after.get(name, 0) <= 1.5 * rss + 300 * 2**20, (name, rss, after.get(name))


def test_custom_metrics_reach_prometheus(song_api, serve_cluster):
    """The songs just made show up on the node's Prometheus endpoint, as a scraper would see them."""
    import re

    wanted = ("ray_songsmith_songs_total", "ray_songsmith_stage_seconds_bucket", "ray_songsmith_audio_seconds_total",
              "ray_songsmith_queue_depth")
    def succeeded(text: str) -> float:
        pattern = r'ray_songsmith_songs_total\{[^}]*outcome="succeeded"[^}]*\} (\S+)'
        return sum(float(m.group(1)) for m in re.finditer(pattern, text))

    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline:  # metrics are exported every couple of seconds
        text = httpx.get(serve_cluster.metrics_url, timeout=10).text
        if all(name in text for name in wanted) and succeeded(text) >= SONGS:
            break
        time.sleep(2)
    missing = [name for name in wanted if name not in text]
    assert not missing, missing
    assert succeeded(text) >= SONGS
    assert 'stage="music"' in text
    assert song_api["token"] not in text
