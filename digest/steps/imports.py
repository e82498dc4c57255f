"""Import a subscriber list from a file, in bounded memory: the file is read one line at a
time (``CsvReader``) and written ``CHUNK`` rows at a time (``Store.subscriber_import``: bulk
writes, one transaction per chunk, duplicates found by the database). Problems and skipped
rows are kept in full up to ``KEEP`` of each, and counted beyond. Progress goes to the progress
hook as lines read of the file's lines, after each chunk.
"""

from __future__ import annotations

import codecs
import contextlib
import itertools
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from digest.audience.csv_import import CsvReader, CsvRow, RowProblem, listed_twice
from digest.steps.progress import Progress, ProgressHook, report_progress
from digest.store import Store
from digest.store.imports import ChunkOutcome

CHUNK = 10_000
KEEP = 100
_BLOCK = 1 << 20


class UnreadableList(ValueError):
    """The file is not UTF-8 text; the message names the line."""


@dataclass
class ImportReport:
    """What an import did. Every data line is counted once: ``added``, ``updated``,
    ``unchanged``, ``kept`` (known and not active: not re-subscribed), ``skipped`` (not active
    in the file) or ``rejected``. ``problems`` and ``skipped_rows`` hold the first ``KEEP``."""

    lines: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    kept: int = 0
    skipped: int = 0
    rejected: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    skipped_rows: list[RowProblem] = field(default_factory=list)

    def reject(self, problem: RowProblem) -> None:
        self.rejected += 1
        if len(self.problems) < KEEP:
            self.problems.append(problem)

    def skip(self, row: RowProblem) -> None:
        self.skipped += 1
        if len(self.skipped_rows) < KEEP:
            self.skipped_rows.append(row)


def count_lines(path: Path) -> int:
    """The file's lines (as a reader with universal newlines sees them), read in blocks;
    raises UnreadableList naming the first line that is not UTF-8, OSError when it cannot be
    read. Nothing is imported from a file that is not text."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 0
    ends_in_cr, last = False, b""
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as e:
                line = lines + block[: max(e.start, 0)].count(b"\n") + 1
                raise UnreadableList(
                    f"line {line} is not UTF-8 text ({e.reason}); save the list as UTF-8 CSV"
                ) from None
            lines += block.count(b"\n") + block.count(b"\r") - block.count(b"\r\n")
            if ends_in_cr and block.startswith(b"\n"):
                lines -= 1
            ends_in_cr = block.endswith(b"\r")
            last = block[-1:]
        if lines or f.tell():
            lines += last not in (b"\n", b"\r")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as e:
        raise UnreadableList(
            f"line {lines} is not UTF-8 text ({e.reason}); save the list as UTF-8 CSV"
        ) from None
    return lines


class _Writer:
    """Writes chunks on a thread of its own, one at a time, while the next chunk is read: the
    database's work (which lets go of the GIL) overlaps the reading. Its session lives on its
    thread (a SQLite connection stays on the thread that made it)."""

    def __init__(self, store: Store, *, now: datetime, source: str) -> None:
        self._todo: queue.SimpleQueue[list[CsvRow] | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[ChunkOutcome | BaseException] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._run, args=(store, now, source), name="import-writer", daemon=True
        )
        self._thread.start()
        self._busy = False

    def _run(self, store: Store, now: datetime, source: str) -> None:
        try:
            with store.subscriber_import(now=now, source=source) as session:
                while (rows := self._todo.get()) is not None:
                    self._done.put(session.add(rows))
        except BaseException as e:  # handed to the reading thread
            self._done.put(e)

    def write(self, rows: list[CsvRow]) -> None:
        self._todo.put(rows)
        self._busy = True

    def outcome(self) -> ChunkOutcome | None:
        """The chunk written last (waiting for it), or None when none is in flight."""
        if not self._busy:
            return None
        self._busy = False
        done = self._done.get()
        if isinstance(done, BaseException):
            raise done
        return done

    def close(self) -> None:
        self._todo.put(None)
        self._thread.join()
        with contextlib.suppress(queue.Empty):
            done = self._done.get_nowait()  # a failure to end the session
            if isinstance(done, BaseException):
                raise done


def import_subscribers_file(
    store: Store,
    path: Path,
    *,
    known_sections: Iterable[str],
    known_digests: Iterable[str] | None,
    now: datetime,
    source: str,
    chunk: int | None = None,
    hook: ProgressHook | None = None,
) -> ImportReport:
    """Import the list at ``path`` (see ``digest.audience.csv_import`` for its rules and
    ``Store.subscriber_import`` for how it is written). Raises UnreadableList or OSError
    before anything is written when the file is not UTF-8 text."""
    chunk = chunk or CHUNK
    total = count_lines(path)
    reader = CsvReader(known_sections=known_sections, known_digests=known_digests)
    report = ImportReport()
    task = f"import {path.name}"
    report_progress(hook, Progress(task, 0, total))

    def settle(items: list[CsvRow | RowProblem], outcome: ChunkOutcome | None) -> None:
        """Count the chunk ``items`` written (its problems in line order), tell the hook."""
        if outcome is None:
            return
        for item in items:
            if isinstance(item, RowProblem):
                report.reject(item)
            elif item.line in outcome.duplicates:
                report.reject(listed_twice(item, outcome.duplicates[item.line]))
            elif item.problem:
                report.reject(RowProblem(item.line, item.problem))
            elif item.skipped:
                report.skip(RowProblem(item.line, item.skipped))
            else:
                report.unchanged += 1
        counts = outcome.counts
        report.added += counts.added
        report.updated += counts.updated
        report.kept += counts.kept_unsubscribed
        report.unchanged -= counts.added + counts.updated + counts.kept_unsubscribed
        done = items[-1].line
        report_progress(hook, Progress(task, done, total, note=f"{report.added} added"))

    writer = _Writer(store, now=now, source=source)
    # The chunk being written while the next one is read.
    written: list[CsvRow | RowProblem] = []
    try:
        with path.open(encoding="utf-8") as f:
            rows = reader.rows(f)
            while items := list(itertools.islice(rows, chunk)):
                settle(written, writer.outcome())
                writer.write([r for r in items if isinstance(r, CsvRow)])
                written = items
        settle(written, writer.outcome())
    finally:
        writer.close()
    report.lines = reader.lines
    report_progress(hook, Progress(task, total, total, note=f"{report.added} added"))
    return report
