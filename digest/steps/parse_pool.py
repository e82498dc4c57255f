"""Big feeds parsed in worker processes that import the feed parser and nothing else.

A worker is ``python -m digest.steps.parse_pool``: it imports ``digest.gather.feeds`` only (not
the command that started it, not the store, not Prefect: a process started by
``multiprocessing`` imports its parent's main module again, which for the ``digest`` command is
the whole command line and for a flow run all of Prefect), reads one job at a time from its
stdin and writes the result to its stdout. It ends when its stdin closes, so it dies with the
gathering process however that ends, and it ignores Ctrl-C (the gathering process decides).

A job is the parse options (pickled) and the body (raw bytes, never copied into a pickle); the
answer is the pickled ``DraftFeed`` (``parse_feed_draft``: plain dataclasses, so the worker
does not import the pydantic models; the caller makes the ``ParsedFeed``) or the ``FeedError``,
with the worker's resident memory after the job: a worker past :data:`RETIRE_MB` (a huge feed
swelled it) is stopped and a fresh one starts when needed, so a long-running process does not
keep the swollen one.

When every worker is busy :meth:`ParsePool.parse` has the caller parse in its own thread, one
thread at a time: the gathering process is one more parser, and a pool of ``cores - 1`` workers
keeps every core busy without a process more than there are cores.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any, TypeVar

T = TypeVar("T")
_SIZE = struct.Struct("!Q")
# A worker whose resident memory is past this after a job is stopped rather than kept idle.
RETIRE_MB = 200.0


class ParseWorkerError(Exception):
    """A worker died or did not answer in time (the caller parses the feed itself)."""


def _rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class ParseWorker:
    """One worker process and the pipes to it."""

    def __init__(self) -> None:
        env = dict(os.environ)
        # The parent's import path (a benchmark or a test may have added the project to it).
        env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.rss_mb = 0.0

    def run(self, body: bytes, options: dict[str, Any], timeout: float) -> tuple[bool, Any]:
        """The worker's answer to one job: (True, the parsed feed) or (False, what the parser
        raised); raises ParseWorkerError when the worker died or hung."""
        deadline = time.monotonic() + timeout
        head = pickle.dumps(options, protocol=pickle.HIGHEST_PROTOCOL)
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            stdin.write(_SIZE.pack(len(head)) + head + _SIZE.pack(len(body)))
            stdin.write(body)
            stdin.flush()
            answer = self._read(_SIZE.unpack(self._read(_SIZE.size, deadline))[0], deadline)
        except OSError as e:
            raise ParseWorkerError(f"parse worker {self.proc.pid} failed: {e}") from None
        ok, result, self.rss_mb = pickle.loads(answer)
        del answer
        return ok, result

    def _read(self, n: int, deadline: float) -> bytes:
        stdout = self.proc.stdout
        assert stdout is not None
        fd = stdout.fileno()
        chunks = bytearray()
        while len(chunks) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise ParseWorkerError(f"parse worker {self.proc.pid} did not answer in time")
            chunk = os.read(fd, min(n - len(chunks), 1 << 20))
            if not chunk:
                code = self.proc.poll()
                raise ParseWorkerError(f"parse worker {self.proc.pid} ended (exit code {code})")
            chunks += chunk
        return bytes(chunks)

    def stop(self, wait: float = 2.0) -> None:
        """Close its stdin (it ends by itself), killing it if it does not within ``wait``."""
        with contextlib.suppress(OSError):
            if self.proc.stdin:
                self.proc.stdin.close()
        try:
            self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


class ParsePool:
    """At most ``size`` workers, started when first needed."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._idle: list[ParseWorker] = []
        self._running = 0
        self._closed = False
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)
        self._slots = threading.BoundedSemaphore(size + 1)
        atexit.register(self.close)

    def _take(self, wait: bool) -> ParseWorker | None:
        with self._freed:
            while True:
                if self._closed:
                    return None
                if self._idle:
                    return self._idle.pop()
                if self._running < self.size:
                    break
                if not wait:
                    return None
                self._freed.wait()
            self._running += 1
        try:
            return ParseWorker()
        except BaseException:
            with self._freed:
                self._running -= 1
                self._freed.notify()
            raise

    def _give_back(self, worker: ParseWorker, keep: bool) -> None:
        with self._freed:
            keep = keep and not self._closed and worker.rss_mb <= RETIRE_MB
            if keep:
                self._idle.append(worker)
            else:
                self._running -= 1
            self._freed.notify()
        if not keep:
            worker.stop()

    def parse(
        self,
        body: bytes,
        options: dict[str, Any],
        timeout: float,
        here: Callable[[], T],
        *,
        here_ok: bool = True,
    ) -> Any:
        """``parse_feed_draft(body, **options)`` in an idle worker, else ``here()`` in this thread
        (``here_ok=False``: wait for a worker instead, for a feed too big to parse here).

        At most ``size + 1`` feeds are parsed at once: one per worker and one in this process
        (more threads parsing here would only take turns under the GIL, each holding a whole
        parsed feed in memory meanwhile); a thread finding every slot taken waits for one.
        Raises what the parser raised (``FeedError``), or ParseWorkerError when the worker
        died or hung (that worker is stopped; the next job starts a fresh one)."""
        with self._slots:
            worker = self._take(wait=not here_ok)
            if worker is None:
                return here()
            try:
                ok, result = worker.run(body, options, timeout)
            except BaseException:
                # Died, hung or interrupted mid-job: its pipes are out of step, it goes.
                worker.proc.kill()
                self._give_back(worker, keep=False)
                raise
            self._give_back(worker, keep=True)
            if not ok:
                raise result
            return result

    def close(self) -> None:
        """Stop the idle workers; busy ones stop when their job is done."""
        atexit.unregister(self.close)  # a closed pool need not be kept alive until exit
        with self._freed:
            self._closed = True
            idle, self._idle = self._idle, []
            self._running -= len(idle)
            self._freed.notify_all()
        for worker in idle:
            worker.stop()


# The worker process -----------------------------------------------------------------------


def _read_exact(stream: IO[bytes], n: int) -> bytes | None:
    data = stream.read(n)
    if len(data) < n:
        return None
    return data


def main() -> None:
    """Answer jobs from stdin until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from digest.gather.feeds import parse_feed_draft
    from digest.steps import heap

    heap.tune()

    jobs, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # stdout carries answers only
    while True:
        size = _read_exact(jobs, _SIZE.size)
        head = size and _read_exact(jobs, _SIZE.unpack(size)[0])
        length = head and _read_exact(jobs, _SIZE.size)
        body = length and _read_exact(jobs, _SIZE.unpack(length)[0])
        if body is None or not head:
            return
        options = pickle.loads(head)
        try:
            result: tuple[bool, Any] = (True, parse_feed_draft(body, **options))
        except Exception as e:  # the parser raises FeedError only; anything else is a bug
            result = (False, e)
        del body
        try:
            answer = pickle.dumps((*result, _rss_mb()), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:  # an error that does not pickle
            answer = pickle.dumps((False, RuntimeError(f"{type(e).__name__}: {e}"), _rss_mb()))
        del result
        answers.write(_SIZE.pack(len(answer)))
        answers.write(answer)
        answers.flush()
        del answer
        heap.trim()  # the job's tree and answer are freed: back to the worker's floor


if __name__ == "__main__":
    main()
