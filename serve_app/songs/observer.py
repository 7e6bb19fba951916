"""Who hears a song's progress: the job runner persists it, the metrics count it.

The composer reports to one observer; `Observers` fans that out, so progress and metrics are fed
from the same calls and cannot disagree.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Stages:
    """Wall-clock intervals of each step, relative to the song's start."""

    t0: float = field(default_factory=time.time)
    spans: dict[str, tuple[float, float]] = field(default_factory=dict)

    def record(self, name: str, started: float, finished: float) -> None:
        self.spans[name] = (started - self.t0, finished - self.t0)

    def public(self) -> dict[str, dict[str, float]]:
        return {
            k: {"start_s": round(a, 4), "end_s": round(b, 4), "seconds": round(b - a, 4)}
            for k, (a, b) in sorted(self.spans.items(), key=lambda kv: kv[1][0])
        }


class SongObserver:
    """Every hook is optional; the default does nothing."""

    async def stage(self, name: str) -> None:
        """The song entered a stage (serve_app.vocabulary.JobStage)."""

    async def progress(self, step: int, total: int) -> None:
        """Diffusion step `step` of `total` finished."""

    def started(self, mode: str) -> None:
        """The composer began the song."""

    def finished(self, outcome: str, mode: str, stages: Stages, audio_s: float) -> None:
        """`outcome`: succeeded, failed or cancelled; `audio_s`: seconds of audio stored (0 unless succeeded)."""


class Observers(SongObserver):
    """Several observers heard as one, in order."""

    def __init__(self, *observers: SongObserver | None):
        self.observers = [o for o in observers if o is not None]

    async def stage(self, name: str) -> None:
        for o in self.observers:
            await o.stage(name)

    async def progress(self, step: int, total: int) -> None:
        for o in self.observers:
            await o.progress(step, total)

    def started(self, mode: str) -> None:
        for o in self.observers:
            o.started(mode)

    def finished(self, outcome: str, mode: str, stages: Stages, audio_s: float) -> None:
        for o in self.observers:
            o.finished(outcome, mode, stages, audio_s)


class MetricsObserver(SongObserver):
    """Feeds the Serve metrics (serve_app.metrics): songs by outcome, step times, songs in flight."""

    def __init__(self, metrics=None):
        from serve_app.metrics import song_metrics

        self.metrics = metrics or song_metrics()
        self.in_flight = 0

    def started(self, mode: str) -> None:
        self.in_flight += 1
        self.metrics.in_flight.set(self.in_flight)

    def finished(self, outcome: str, mode: str, stages: Stages, audio_s: float) -> None:
        self.in_flight -= 1
        self.metrics.in_flight.set(self.in_flight)
        self.metrics.song_finished(outcome, mode, stages.spans, audio_s)
