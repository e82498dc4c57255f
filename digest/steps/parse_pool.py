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

A worker holds up to :data:`DEPTH` jobs: the one it parses and the next, already written to its
pipe, so it never waits between jobs for the gathering process (busy with fetching, storing and
its own parsing, and taking turns under the GIL) to hand it the next one. When every worker
holds as many as it can, :meth:`ParsePool.parse` has the caller parse in its own thread, one
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
from collections.abc import Callable, Iterator
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
    """One worker process, the pipes to it, and its jobs: at most :data:`DEPTH` written and
    not yet answered (the one it parses, and the next waiting in its pipe, so it starts on
    that one the moment it has answered, without waiting for this process to hand it over).

    Answers come in the order the jobs were written; each caller reads its own answer when the
    one before it has been read (its turn)."""

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
        assert self.proc.stdin is not None
        self._stdin = self.proc.stdin.fileno()
        os.set_blocking(self._stdin, False)  # writes wait in select, with a deadline
        self.rss_mb = 0.0
        self.jobs = 0  # taken and not given back (kept by the pool, under its lock)
        self.retiring = False  # takes no more jobs; stopped when its last is given back
        self._writing = threading.Lock()
        self._turns = threading.Condition()
        self._written = 0  # jobs written so far: the next job's place in the answers
        self._read = 0  # answers read so far: whose turn it is to read
        self._broken: str | None = None

    def run(self, body: bytes, options: dict[str, Any], timeout: float) -> tuple[bool, Any]:
        """The worker's answer to one job: (True, the parsed feed) or (False, what the parser
        raised). ``timeout`` counts from the moment the worker can start on the job (the answer
        before it read). Raises ParseWorkerError when the worker died or hung, or was killed
        for a job before this one; the worker is then killed, and every job after this one
        fails the same way."""
        head = pickle.dumps(options, protocol=pickle.HIGHEST_PROTOCOL)
        with self._writing:
            place = self._written
            self._written += 1
            # The pipe holds little: the body goes in as the worker reads it, once it is done
            # with the jobs ahead (each of which has ``timeout``).
            deadline = time.monotonic() + timeout * (1 + place - self._read)
            with self._breaking():
                self._write_all(_SIZE.pack(len(head)) + head + _SIZE.pack(len(body)), deadline)
                self._write_all(body, deadline)
        with self._turns:
            self._turns.wait_for(lambda: self._read == place or self._broken is not None)
            if self._broken is not None:
                raise ParseWorkerError(self._broken)
        with self._breaking():
            deadline = time.monotonic() + timeout
            size = _SIZE.unpack(self._read_exact(_SIZE.size, deadline))[0]
            answer = self._read_exact(size, deadline)
        with self._turns:
            self._read += 1
            self._turns.notify_all()
        ok, result, self.rss_mb = pickle.loads(answer)
        del answer
        return ok, result

    @contextlib.contextmanager
    def _breaking(self) -> Iterator[None]:
        """A job written or read in part leaves the pipes out of step: whatever stops it (the
        worker, the pipe, an interrupt) breaks the worker, as ParseWorkerError but for an
        interrupt, which goes on as itself."""
        try:
            yield
        except ParseWorkerError as e:
            self._break(str(e))
            raise
        except OSError as e:
            self._break(f"parse worker {self.proc.pid} failed: {e}")
            raise ParseWorkerError(self._broken) from None
        except BaseException:
            self._break(f"parse worker {self.proc.pid} was stopped mid-job")
            raise

    def _break(self, why: str) -> None:
        """Kill the worker (its pipes are out of step): every job not answered yet fails."""
        self.proc.kill()
        with self._turns:
            self._broken = self._broken or why
            self._turns.notify_all()

    def _write_all(self, data: bytes, deadline: float) -> None:
        fd = self._stdin
        view = memoryview(data)
        while view:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                raise ParseWorkerError(f"parse worker {self.proc.pid} took no job in time")
            try:
                view = view[os.write(fd, view[: 1 << 20]) :]
            except BlockingIOError:
                continue

    def _read_exact(self, n: int, deadline: float) -> bytes:
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


# Jobs a worker holds at once: the one it parses and the next, waiting in its pipe.
DEPTH = 2


class ParsePool:
    """At most ``size`` workers, started when first needed, each holding up to :data:`DEPTH`
    jobs."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._workers: list[ParseWorker] = []
        self._starting = 0
        self._closed = False
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)
        self._slots = threading.BoundedSemaphore(size * DEPTH + 1)
        atexit.register(self.close)

    def _take(self, wait: bool) -> ParseWorker | None:
        """An idle worker, else a new one while there are fewer than ``size``, else the
        least busy with room for a job; None when none has room and ``wait`` is false."""
        with self._freed:
            while True:
                if self._closed:
                    return None
                open_ = [w for w in self._workers if w.jobs < DEPTH and not w.retiring]
                least = min(open_, key=lambda w: w.jobs, default=None)
                room = len(self._workers) + self._starting < self.size
                if (least is None or least.jobs) and room:
                    break  # start a worker rather than queue behind a busy one
                if least is not None:
                    least.jobs += 1
                    return least
                if not wait:
                    return None
                self._freed.wait()
            self._starting += 1
        try:
            worker = ParseWorker()
        except BaseException:
            with self._freed:
                self._starting -= 1
                self._freed.notify_all()
            raise
        with self._freed:
            self._starting -= 1
            worker.jobs = 1
            self._workers.append(worker)
        return worker

    def _give_back(self, worker: ParseWorker, ok: bool) -> None:
        with self._freed:
            worker.jobs -= 1
            if not ok or self._closed or worker.rss_mb > RETIRE_MB:
                worker.retiring = True
            stop = worker.retiring and worker.jobs == 0
            if stop:
                self._workers.remove(worker)
            self._freed.notify_all()
        if stop:
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
        """``parse_feed_draft(body, **options)`` in a worker with room for the job (an idle
        one first), else ``here()`` in this thread (``here_ok=False``: wait for room instead,
        for a feed too big to parse here).

        At most ``size * DEPTH + 1`` feeds are held for parsing at once: those the workers
        hold and one parsed in this process (more threads parsing here would only take turns
        under the GIL, each holding a whole parsed feed in memory meanwhile); a thread finding
        every place taken waits for one. Raises what the parser raised (``FeedError``), or
        ParseWorkerError when the worker died or hung (that worker is stopped; the next job
        starts a fresh one)."""
        with self._slots:
            worker = self._take(wait=not here_ok)
            if worker is None:
                return here()
            healthy = False
            try:
                ok, result = worker.run(body, options, timeout)
                healthy = True
            finally:
                self._give_back(worker, healthy)
            if not ok:
                raise result
            return result

    def close(self) -> None:
        """Stop the idle workers; busy ones stop when their last job is done."""
        atexit.unregister(self.close)  # a closed pool need not be kept alive until exit
        with self._freed:
            self._closed = True
            idle = [w for w in self._workers if not w.jobs]
            self._workers = [w for w in self._workers if w.jobs]
            for w in self._workers:
                w.retiring = True
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
