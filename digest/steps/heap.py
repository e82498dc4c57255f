"""Process-level tuning of the C heap for gathering, on glibc; no-ops elsewhere.

Gathering holds big short-lived buffers (a feed's body, its parsed tree, its articles) in
several threads at once. glibc's malloc gives each thread that allocates concurrently an
arena of its own (up to eight per core) and keeps what is freed in them, and raises its mmap
threshold as big blocks come and go, so freed bodies stay in the heap: the process keeps its
peak long after the work is done. Three settings bound that:

- :func:`tune`: at most :data:`ARENA_MAX` arenas (threads share them; allocation is not what
  gathering waits on), and a fixed :data:`MMAP_THRESHOLD`, so every block that big is mapped
  on its own and goes back to the system when freed. Call it before the threads start (an
  arena made before stays); later calls do nothing.
- :func:`trim`: hand the free memory at the top and inside the arenas back to the system
  (``malloc_trim(0)``), in a parse worker after each job. The gathering process does not
  trim after each source: with the two settings above it gave back little (2 MB of 170 in
  ``bench/gather.py``) and cost up to a quarter of the cold gather's time.
"""

from __future__ import annotations

import ctypes
import threading
from functools import cache

# mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

ARENA_MAX = 2
MMAP_THRESHOLD = 256 * 1024

_tuned = False
_lock = threading.Lock()


@cache
def _libc() -> ctypes.CDLL | None:
    """glibc, or None (musl, macOS, Windows: their allocators have no such knobs)."""
    try:
        # The symbols this process already has (no ``find_library``: it runs a subprocess).
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (raises AttributeError off glibc)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def available() -> bool:
    """Whether this process's allocator is glibc's (the tuning does something)."""
    return _libc() is not None


def tune() -> bool:
    """Bound the arenas and fix the mmap threshold, once per process; whether it was applied
    (False off glibc, or when it already was)."""
    global _tuned
    libc = _libc()
    if libc is None:
        return False
    with _lock:
        if _tuned:
            return False
        _tuned = True
    ok = libc.mallopt(M_ARENA_MAX, ARENA_MAX) == 1
    return libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and ok


def trim() -> bool:
    """Give the heap's free memory back to the system; whether any was (False off glibc)."""
    libc = _libc()
    return libc is not None and libc.malloc_trim(0) == 1
