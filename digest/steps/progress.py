"""How a long step tells whoever started it how far it got: a *progress hook*, called with
counts after each unit of work (a source gathered, a batch delivered, a chunk imported).

Steps take an optional hook and call :func:`report_progress`; without one they call the hook
an entry point installed for this process (:func:`listening`: the CLI shows a progress bar on
a terminal while flows run in-process), else nothing. Steps never draw anything themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` units of ``task``, which names the work ("gather qiosk",
    "deliver weekly-2026-W49"); ``note`` names the unit just done (a source's key), ``failed``
    counts those that failed so far."""

    task: str
    done: int
    total: int
    note: str = ""
    failed: int = 0


ProgressHook = Callable[[Progress], None]

_installed: ProgressHook | None = None
_lock = threading.Lock()


@contextmanager
def listening(hook: ProgressHook) -> Iterator[None]:
    """Send the progress of every step in this process (any thread) to ``hook`` meanwhile."""
    global _installed
    with _lock:
        before, _installed = _installed, hook
    try:
        yield
    finally:
        with _lock:
            _installed = before


def report_progress(hook: ProgressHook | None, event: Progress) -> None:
    """Tell ``hook`` (or the installed one) about ``event``; a failing hook never fails a step."""
    target = hook or _installed
    if target is None:
        return
    with suppress(Exception):  # a display problem is not the step's
        target(event)
