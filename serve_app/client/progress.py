"""A job's progress from its event stream, as one number and a label, and a terminal progress bar.

The stages come in this order (`writing` only when the LLM writes words, `painting` only when a
cover is made): writing, painting, composing (diffusion step k of n), encoding, uploading. Each
gets a share of the bar; composing gets most of it, spread over its steps.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from ._common import SongEvent

# (start, end) of each stage's share of the bar, in percent.
STAGE_SPANS = {"writing": (2.0, 12.0), "painting": (12.0, 20.0), "composing": (20.0, 90.0),
               "encoding": (90.0, 95.0), "uploading": (95.0, 99.0)}


class JobProgress:
    """Folds events into `percent` (0-100, never going back), `label` and `status`."""

    def __init__(self) -> None:
        self.percent = 0.0
        self.status = "queued"
        self.stage: str | None = None
        self.step: int | None = None
        self.total: int | None = None
        self.error: str | None = None

    def update(self, event: SongEvent) -> bool:
        """Apply one event; True when what it shows changed."""
        before = (self.percent, self.label)
        data = event.data
        if event.type == "status":
            self.status = data.get("status", self.status)
            if self.status == "queued":
                self.stage = self.step = self.total = None  # a retry or hand-back starts over
            if self.status == "succeeded":
                self.percent = 100.0
            self.error = data.get("error") or self.error
        elif event.type == "stage":
            self.stage, self.step, self.total = data.get("stage"), None, None
        elif event.type == "progress":
            self.stage = data.get("stage") or self.stage
            self.step, self.total = data.get("step"), data.get("total")
        if event.type in ("stage", "progress") and self.status == "queued":
            self.status = "running"  # a stream resumed past the job's start
        elif event.type == "cancel_requested":
            self.status = "cancelling"
        self.percent = max(self.percent, self._estimate())
        return before != (self.percent, self.label)

    def _estimate(self) -> float:
        if self.status == "succeeded":
            return 100.0
        span = STAGE_SPANS.get(self.stage or "")
        if span is None:
            return 1.0 if self.status == "running" else 0.0
        start, end = span
        if self.step is not None and self.total:
            return start + (end - start) * min(1.0, self.step / self.total)
        return start

    @property
    def label(self) -> str:
        if self.status in ("queued", "succeeded", "failed", "cancelled", "cancelling"):
            return self.status
        if self.stage == "composing" and self.step is not None and self.total:
            return f"composing step {self.step}/{self.total}"
        return self.stage or self.status


class ProgressBar:
    """`[#######.........]  42%  composing step 3/8  0:12` redrawn in place on a terminal.

    Writes only when `stream` is a TTY (or `force`); `close()` ends the line."""

    def __init__(self, stream: TextIO | None = None, *, width: int = 28, force: bool = False, prefix: str = ""):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = force or bool(getattr(self.stream, "isatty", lambda: False)())
        self.width, self.prefix = width, prefix
        self.started = time.monotonic()
        self._shown = False
        self._last = ""

    def show(self, progress: JobProgress) -> None:
        if not self.enabled:
            return
        filled = int(round(self.width * progress.percent / 100))
        elapsed = int(time.monotonic() - self.started)
        line = (f"{self.prefix}[{'#' * filled}{'.' * (self.width - filled)}] {progress.percent:3.0f}%  "
                f"{progress.label}  {elapsed // 60}:{elapsed % 60:02d}")
        pad = " " * max(0, len(self._last) - len(line))
        self.stream.write("\r" + line + pad)
        self.stream.flush()
        self._shown, self._last = True, line

    def close(self) -> None:
        if self.enabled and self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False
