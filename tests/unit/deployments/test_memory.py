"""Freed heap pages go back to the OS after a request, so an idle replica shows its real size."""

from __future__ import annotations

import gc

import pytest

from deployments import memory


def _rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def _churn() -> list[bytearray]:
    """What a render leaves behind: many mid-size temporaries freed, one survivor pinning the heap top."""
    blocks = [bytearray(48 * 1024) for _ in range(4000)]  # ~190 MB, below glibc's mmap threshold
    keep = [blocks[-1]]
    del blocks
    gc.collect()
    return keep


@pytest.mark.skipif(memory._MALLOC_TRIM is None, reason="not glibc: nothing to trim")
def test_release_returns_freed_heap_to_the_os():
    base = _rss()
    keep = _churn()
    held = _rss() - base  # freed, but still resident: glibc keeps it for reuse
    assert memory.release_free_memory() is True
    released = held - (_rss() - base)
    assert held > 100 * 2**20, held
    assert released > 0.8 * held, (held, released)
    del keep


def test_replica_trims_only_when_its_last_request_ends(monkeypatch):
    """Under load requests overlap and reuse the same memory: no trim until the replica is idle."""
    calls = []
    monkeypatch.setattr(memory, "_MALLOC_TRIM", lambda pad: calls.append(pad) or 1)
    idle = memory.IdleTrimmer()
    with idle.request():
        with idle.request():
            assert idle.active == 2
        assert calls == []  # one still running
    assert calls == [0] and idle.active == 0 and idle.trims == 1
    with pytest.raises(ValueError, match="boom"), idle.request():
        raise ValueError("boom")  # a failed request frees its memory too
    assert calls == [0, 0] and idle.active == 0


def test_without_glibc_release_is_a_no_op(monkeypatch):
    monkeypatch.setattr(memory, "_MALLOC_TRIM", None)
    assert memory.release_free_memory() is False
