"""Dying with the run: a process started for a run (a sending worker, the temporary Prefect API
server) ends the moment the run is gone, however it went, so a killed run leaves no orphan.

This module imports nothing heavy: a process calls :func:`die_with_parent` first thing, and the
sooner it does, the shorter the window in which its run may die unnoticed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from multiprocessing.connection import Connection

_PR_SET_PDEATHSIG = 1


def die_with_parent(run: int, lifeline: Connection) -> None:
    """Have this process die with the run that started it (``run``: its pid), so a killed run
    leaves no worker sending the rest of its batches and no server holding on to its memory.

    ``lifeline`` is the reading end of a pipe whose only writing end the run holds: when the
    run dies, however it dies, the read ends (EOF) and a watcher thread ends this process at
    once. (A parent-death signal alone is not enough: under the fork server the parent is the
    server, which stays up while workers hold its pipe.) A run already gone means exit now.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            lifeline.recv()  # nothing is ever sent: this returns only when the run is gone
        os._exit(1)

    threading.Thread(target=watch, name="lifeline", daemon=True).start()
    check_run(run)


def check_run(run: int) -> None:
    """End this process at once if the run is gone."""
    try:
        os.kill(run, 0)
    except ProcessLookupError:
        os._exit(1)
    except PermissionError:
        pass  # alive, under another user (cannot happen for our own run, but harmless)
