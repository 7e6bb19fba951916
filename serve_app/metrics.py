"""Custom Serve metrics (exported by Ray's metrics agent; Prometheus scrapes each node).

Names are prefixed `songsmith_`; Ray adds its own `ray_` prefix on export.
"""

from __future__ import annotations

from functools import cache

STAGE_BUCKETS_S = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200]


class SongMetrics:
    def __init__(self) -> None:
        from ray.serve import metrics

        self.songs = metrics.Counter(
            "songsmith_songs_total", description="Songs finished, by outcome.", tag_keys=("outcome", "mode")
        )
        self.stage_seconds = metrics.Histogram(
            "songsmith_stage_seconds",
            description="Wall time of each song stage (tags, lyrics, music, cover, meta, uploads, total).",
            boundaries=STAGE_BUCKETS_S,
            tag_keys=("stage",),
        )
        self.audio_seconds = metrics.Counter(
            "songsmith_audio_seconds_total", description="Seconds of audio generated and stored."
        )
        self.in_flight = metrics.Gauge("songsmith_songs_in_flight", description="Songs being made by this replica.")
        self.queue_depth = metrics.Gauge("songsmith_queue_depth", description="Song jobs waiting to start.")

    def song_finished(self, outcome: str, mode: str, spans: dict[str, tuple[float, float]], audio_s: float) -> None:
        self.songs.inc(1, tags={"outcome": outcome, "mode": mode})
        for stage, (start, end) in spans.items():
            self.stage_seconds.observe(max(0.0, end - start), tags={"stage": stage})
        if audio_s:
            self.audio_seconds.inc(audio_s)


@cache
def song_metrics() -> SongMetrics:
    """One set per process: Ray metrics must not be re-registered per song."""
    return SongMetrics()
