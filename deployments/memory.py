"""Give freed heap memory back to the OS, so idle replicas stay at their real size.

Loading weights and running a pipeline free hundreds of MB of temporaries (activations,
dtype-conversion buffers) that glibc keeps mapped for reuse: an idle replica then holds, in
the OS's eyes, its model plus the high-water mark of its last request. `malloc_trim` returns
those pages; it costs well under a millisecond when there is little to free. No torch import
here: the ingress imports the deployment modules to bind them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)


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


def releases_memory(fn: F) -> F:
    """Trim after the call returns, when its temporaries are already freed."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            release_free_memory()

    return wrapper  # type: ignore[return-value]
