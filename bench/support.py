"""What the benchmarks share: Postfix's ``smtp-sink`` and ``smtp-source`` on loopback, the
memory of a process tree sampled from /proc, and a benchmark's own child processes (its feed
server, its baseline) started by role.

Not a benchmark itself (``bench/run.py`` skips it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

SESSIONS = 4
SIZE = 81920
SBIN = ("/usr/sbin", "/usr/local/sbin")


def tool(name: str) -> str:
    found = shutil.which(name) or next(
        (f"{d}/{name}" for d in SBIN if os.access(f"{d}/{name}", os.X_OK)), None
    )
    if not found:
        sys.exit(f"{name} not found: install Postfix's tools (Debian: apt-get install postfix)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sink(port: int) -> subprocess.Popen[bytes]:
    cmd = [tool("smtp-sink")]
    if os.geteuid() == 0:
        cmd += ["-u", "nobody"]  # smtp-sink refuses to run as root without dropping to a user
    sink = subprocess.Popen([*cmd, f"127.0.0.1:{port}", "1024"], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return sink
        except OSError:
            if sink.poll() is not None:
                err = sink.stderr.read().decode() if sink.stderr else ""
                sys.exit(f"smtp-sink did not start: {err}")
            time.sleep(0.05)
    sink.kill()
    sys.exit("smtp-sink did not start listening")


def smtp_source(port: int, messages: int, sessions: int = SESSIONS, size: int = SIZE) -> float:
    """Messages per second of smtp-source at ``sessions`` sessions (connections reused)."""
    cmd = [tool("smtp-source"), "-s", str(sessions), "-d", "-l", str(size), "-m", str(messages)]
    started = time.perf_counter()
    subprocess.run([*cmd, f"127.0.0.1:{port}"], check=True)
    return messages / (time.perf_counter() - started)


def child(script: str, role: str) -> subprocess.Popen[str]:
    """``script`` started again as ``role`` (a process of the benchmark's own, such as its feed
    server), talking on its stdin and stdout."""
    return subprocess.Popen(
        [sys.executable, script, role], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def run_as(roles: dict[str, Callable[[], object]], main: Callable[[], int | None]) -> None:
    """Run the role the command line names (a process :func:`child` started), else ``main``,
    and exit with what ``main`` returns."""
    role = roles.get(sys.argv[1]) if len(sys.argv) == 2 else None
    if role is not None:
        role()
        return
    sys.exit(main())


@contextmanager
def store_urls(kind: str, work: Path) -> Iterator[Callable[[int], str]]:
    """A function giving a fresh, empty store's URL for each number: a SQLite file in
    ``work``, or (``kind`` "postgresql") a database on a throwaway PostgreSQL server."""
    if kind == "sqlite":
        yield lambda n: f"sqlite:///{work}/sqlite-{n}.db"
        return
    from tests import postgres

    if not postgres.available():
        sys.exit("PostgreSQL server binaries not found (apt-get install postgresql)")
    with postgres.server() as base:
        yield lambda n: postgres.create_database(base, f"bench_{n}")


def _kb(path: str, field: str) -> int:
    """A ``Field:   123 kB`` line of a /proc file; 0 when the process is gone."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def descendants(pid: int) -> list[int]:
    """Children, and theirs: workers are children of the fork server, not of the run."""
    out, todo = [], _children(pid)
    while todo:
        child = todo.pop()
        out.append(child)
        todo += _children(child)
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _role(pid: int, root: int) -> str:
    """What a process of the tree is, from its command line (a process forked by the fork
    server has the server's command line: it is a worker)."""
    if pid == root:
        return "command"
    cmd = _cmdline(pid)
    if "forkserver" in cmd:
        return "worker" if "forkserver" in _cmdline(_parent(pid)) else "fork server"
    if "resource_tracker" in cmd:
        return "resource tracker"
    if "temporary_api" in cmd or "uvicorn" in cmd or "prefect" in cmd:
        return "prefect api server"
    if "multiprocessing" in cmd:
        return "worker"
    return cmd.split(" ", 1)[0].rsplit("/", 1)[-1] or "process"


# The high-water marks are the kernel's own (a spike between samples is not missed), so
# sampling only has to see each process before it ends; proportional sizes every tenth sample.
_PSS_EVERY = 10


class TreeRss:
    """Samples the memory of a process (``root``, default this one) and every process under it
    every ``every`` seconds (50 ms): ``main`` and ``worker`` are the peak resident sets
    (high-water marks) of the root and of the largest other process, ``total`` the peak of their
    proportional set sizes added up (shared pages counted once; every tenth sample, and only
    with ``pss``); ``peaks`` each process's own high-water mark (VmHWM: the kernel's peak, so a
    spike between samples is not missed) with its role, by pid.

    A benchmark that needs only the high-water marks over a long run samples less often and
    without ``pss``: the sampler then takes next to nothing of the machine it measures."""

    def __init__(self, root: int | None = None, *, every: float = 0.05, pss: bool = True) -> None:
        self.root = root
        self.every, self.pss = every, pss
        self.main = 0
        self.worker = 0
        self.total = 0
        self.peaks: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self, me: int, *, pss: bool) -> None:
        others = descendants(me)
        for pid in [me, *others]:
            hwm = _kb(f"/proc/{pid}/status", "VmHWM:")
            if not hwm:
                continue
            if pid == me:
                self.main = max(self.main, hwm)
            else:
                self.worker = max(self.worker, hwm)
            role, seen = self.peaks.get(pid, ("", 0))
            self.peaks[pid] = (role or _role(pid, me), max(seen, hwm))
        if pss:
            self.total = max(
                self.total, sum(_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in [me, *others])
            )

    def _run(self) -> None:
        me = self.root or os.getpid()
        n = 0
        while not self._stop.wait(self.every):
            # Proportional sizes walk every page table (the costliest read by far): a tenth
            # as often, so the sampling takes little of the machine it measures.
            self._sample(me, pss=self.pss and n % _PSS_EVERY == 0)
            n += 1
        self._sample(me, pss=False)  # the last high-water marks

    def by_role(self) -> dict[str, float]:
        """The largest high-water mark per role, in MB."""
        out: dict[str, float] = {}
        for role, kb in self.peaks.values():
            out[role] = max(out.get(role, 0.0), round(kb / 1024, 1))
        return out

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
