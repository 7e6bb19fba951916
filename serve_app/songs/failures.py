"""How a song fails: which failures another attempt can get past, and what a caller may read."""

from __future__ import annotations

from serve_app.redact import redact

MAX_CAUSES = 5  # how deep to follow a chain of wrapped exceptions


class SongFailed(RuntimeError):
    """A step failed; the message names the step and is safe to show to the caller.

    `retryable` marks failures of the machinery (a replica process died, storage unreachable)
    that another attempt can get past; an engine's own error (bad input, out of memory) is final.
    """

    def __init__(self, stage: str, message: str, *, retryable: bool = False):
        super().__init__(f"{stage} failed: {message}")
        self.stage = stage
        self.retryable = retryable

    @classmethod
    def wrap(cls, stage: str, exc: BaseException) -> SongFailed:
        return cls(stage, safe_message(exc), retryable=is_transient(exc))


def is_transient(exc: BaseException | None) -> bool:
    """A dead or overloaded replica, a lost node or object, unreachable storage: worth a retry."""
    from ray import exceptions as rx
    from ray.serve import exceptions as sx

    from serve_app.storage import StorageError

    seen = 0
    while exc is not None and seen < MAX_CAUSES:
        if isinstance(exc, rx.RayActorError | rx.ActorUnavailableError | rx.ActorUnschedulableError
                      | rx.NodeDiedError | rx.ObjectLostError | sx.BackPressureError):
            return True
        if type(exc).__name__ == "DeploymentUnavailableError":
            return True
        if isinstance(exc, StorageError) and getattr(exc, "code", "") in ("unreachable", "io", "error"):
            return True
        exc = getattr(exc, "cause", None) or exc.__cause__
        seen += 1
    return False


def safe_message(exc: BaseException) -> str:
    """An exception's message for callers: the root cause's type and first line, cut short.

    Ray wraps a replica's exception in RayTaskError (with a traceback and ANSI colours); the
    caller wants the engine's own words, e.g. "EngineError: out of GPU memory ...", without the
    paths, URLs or addresses they may carry (serve_app.redact).
    """
    from ray.exceptions import RayTaskError

    for _ in range(MAX_CAUSES):
        cause = getattr(exc, "cause", None)
        if isinstance(exc, RayTaskError) and cause is not None:
            exc = cause
        else:
            break
    text = str(exc).strip()
    first = redact(text.splitlines()[0]) if text else ""  # no paths, URLs or addresses (docs/security.md)
    return f"{type(exc).__name__}: {first[:300]}" if first else type(exc).__name__
