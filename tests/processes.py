"""Finding the processes a test started, however deep, through /proc (Linux).

A :class:`Mark` is an environment variable with a value of its own: every process started with
it, and everything those start in turn (fork servers, workers, servers, orphans re-parented to
init), carries it, so a test can tell whether any of them outlived the run it killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

PROC = Path("/proc")


def _pids() -> list[int]:
    return [int(p.name) for p in PROC.iterdir() if p.name.isdigit()]


def _stat(pid: int) -> tuple[str, int] | None:
    """A process's state letter and parent pid; None once it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: read after its last ")".
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def _live(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")  # a zombie has finished


def environ(pid: int) -> list[bytes]:
    try:
        return (PROC / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    """The running processes under ``pid`` (children, their children, ...)."""
    parents = {p: s[1] for p in _pids() if (s := _stat(p)) is not None and s[0] != "Z"}
    found, frontier = [], {pid}
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = set(children)
    return found


class Mark:
    """Marks the processes a test starts; :meth:`env` gives the environment to start them with."""

    def __init__(self, name: str = "DIGEST_TEST_MARK") -> None:
        self.name = name
        self.value = uuid.uuid4().hex

    def env(self, base: dict[str, str]) -> dict[str, str]:
        return {**base, self.name: self.value}

    def alive(self) -> list[int]:
        """Processes still running that carry this mark."""
        needle = f"{self.name}={self.value}".encode()
        return [p for p in _pids() if needle in environ(p) and _live(p)]

    def assert_gone(self, within: float = 5.0, what: str = "processes of a killed run") -> None:
        deadline = time.monotonic() + within
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        left = self.alive()
        if left:
            description = _describe(left)
            self.kill()  # a failing test leaves no orphans behind either
            raise AssertionError(f"{what} outlived it by {within:.0f} s: {description}")

    def kill(self) -> None:
        """End every process still carrying this mark (each found by its own pid)."""
        for pid in self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _describe(pids: list[int]) -> str:
    lines = []
    for pid in pids:
        try:
            cmd = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            cmd = "?"
        lines.append(f"{pid} ({cmd.strip()[:160]})")
    return "; ".join(lines)
