"""Give freed heap memory back to the OS, so idle replicas stay at their real size.

Loading weights and running a pipeline free hundreds of MB of temporaries (activations,
dtype-conversion buffers) that glibc keeps mapped for reuse: an idle replica then holds, in
the OS's eyes, its model plus the high-water mark of its last request. `malloc_trim` returns
those pages. Engines trim once after load and warm-up; deployments trim when their last
request in flight finishes, so back-to-back requests under load don't pay for faulting the
same memory in again. No torch import here: the ingress imports the deployment modules.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def _libc_malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


_MALLOC_TRIM = _libc_malloc_trim()


def release_free_memory() -> bool:
    """Return freed heap pages to the OS; False where the C library can't (not glibc)."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


class IdleTrimmer:
    """Counts a replica's requests in flight (waiting or running); trims when the last one ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self.trims = 0

    @property
    def active(self) -> int:
        return self._active

    @contextmanager
    def request(self) -> Iterator[None]:
        with self._lock:
            self._active += 1
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
                idle = self._active == 0
            if idle and release_free_memory():
                self.trims += 1
