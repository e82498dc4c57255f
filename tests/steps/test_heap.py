"""The heap tuning of a gathering process (glibc): threads share at most two arenas, a block of
256 KB or more is mapped on its own whatever came before, and a trim gives freed memory back.

Each case runs in a fresh interpreter (the tuning is for the whole process, once), tuned and
not, so that each shows the tuning is what makes the difference."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from digest.steps import heap

PROJECT = Path(__file__).resolve().parents[2]

glibc = pytest.mark.skipif(not heap.available(), reason="the tuning is glibc's")

PRELUDE = """
import ctypes, json, sys, threading
from digest.steps import heap
if sys.argv[1] == "tuned":
    assert heap.tune()
    assert not heap.tune()  # once per process
libc = ctypes.CDLL("libc.so.6")

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmRSS:"))
"""

ARENAS = """
import os, tempfile
# Eight threads allocate at the same time, each holding its blocks until all have some
# (glibc gives a thread that finds the arenas busy one of its own, up to its limit).
barrier = threading.Barrier(8)
def work():
    held = [bytearray(2000) for _ in range(200)]
    barrier.wait()
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
# malloc_stats writes one "Arena N:" block per arena to stderr.
with tempfile.TemporaryFile() as f:
    saved = os.dup(2); os.dup2(f.fileno(), 2)
    libc.malloc_stats()
    os.dup2(saved, 2); f.seek(0)
    print(json.dumps(f.read().decode().count("Arena ")))
"""

MMAPPED = """
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = MallInfo2
big = bytearray(8_000_000)
del big  # glibc's dynamic threshold would now rise to 8 MB
before = libc.mallinfo2().hblkhd
block = bytearray(600_000)
print(json.dumps(libc.mallinfo2().hblkhd - before))
"""

TRIM = """
start = rss_mb()
blocks = [bytearray(100_000) for _ in range(400)]  # 40 MB in the heap (under any threshold)
for b in blocks:
    b[::4096] = bytes(len(b[::4096]))  # touched: resident
keeper = bytearray(1000)  # above them: the heap's top cannot shrink past it
del blocks
freed = rss_mb()
trimmed = heap.trim()
print(json.dumps([freed - start, freed - rss_mb(), trimmed]))
"""


def run(script: str, mode: str) -> object:
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    env.pop("MALLOC_ARENA_MAX", None)
    env.pop("GLIBC_TUNABLES", None)
    out = subprocess.run(
        [sys.executable, "-c", PRELUDE + script, mode],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout)


@glibc
def test_threads_share_at_most_two_arenas_once_tuned() -> None:
    assert run(ARENAS, "tuned") <= heap.ARENA_MAX
    assert run(ARENAS, "plain") > heap.ARENA_MAX  # a thread each, without the tuning


@glibc
def test_a_big_block_is_mapped_on_its_own_once_tuned() -> None:
    # After an 8 MB block came and went, a 600 KB one is still mapped (freed straight back
    # to the system), where glibc alone would have raised its threshold past it.
    assert run(MMAPPED, "tuned") >= 600_000
    assert run(MMAPPED, "plain") == 0


@glibc
def test_a_trim_gives_freed_memory_back() -> None:
    kept, given_back, trimmed = run(TRIM, "tuned")  # type: ignore[misc]
    assert kept > 30  # MB of the 40 freed are still resident until the trim
    assert trimmed is True
    assert given_back > 30


def test_no_ops_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "_libc", lambda: None)
    monkeypatch.setattr(heap, "_tuned", False)
    assert heap.available() is False
    assert heap.tune() is False
    assert heap.trim() is False
