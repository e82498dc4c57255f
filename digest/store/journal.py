"""The send journal: each provider answer written down the moment it is known.

The ledger is updated once per batch (one transaction, not one per message). Between the
provider's answer and that transaction, a crash would forget which messages went out, and a
re-run would send them again. So every answer is first written to a journal, before the next
message is attempted. Each sending process writes its own (:class:`Journal`), under the owner
whose claim the rows are (a sending run or shard); the owner that takes a dead one's rows over
takes its journal with them, records what it answered for rows still ``sending`` and gives the
rest back. What is then sent twice is only what was in flight when the crash came: at most one
message per SMTP session, one request per API session.

Two implementations of one interface (:class:`Journal` to write, :class:`Record` to read back,
forget and discard an edition's):

- files (SQLite, one machine): ``<data_dir>/journal/<edition id>/<owner>~<pid>-<n>.jsonl``, one
  line per answer, each an ``os.write`` straight to the operating system: it survives the
  process being killed (``kill -9``), though not the machine losing power. An owner's files go
  when its delivery ends.
- the store (PostgreSQL, :class:`StoreJournal` and :class:`StoreRecord`): one ``send_journal``
  row per answer, written by the sending process on a small connection of its own, committed
  before the next message can go out (it travels while the next message's envelope does; the
  body waits for it), with ``synchronous_commit`` off for that session: a killed process
  or machine loses nothing (the server has the row), only a crash of the database server itself
  could lose the last answers before they reach its disk (those messages may then go out
  twice). No shared disk is needed: a shard on any machine settles a dead one's rows. Rows are
  deleted once their answers are in the ledger.

Files written without an owner (by runs before owners existed) are read as those of rows
claimed without one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from digest.models import SendResult, SendStatus
from digest.store import schema as t

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def edition_dir(root: Path, edition_id: str) -> Path:
    return root / _UNSAFE.sub("_", edition_id)


def _owner_prefix(owner: str) -> str:
    return _UNSAFE.sub("_", owner) + "~"


class Journal:
    """Where one sending process writes its answers for one edition: an append-only file of
    ``(delivery id, result)`` lines (this class), or rows in the store (:class:`StoreJournal`).
    :meth:`write` is the one way in, for both."""

    def __init__(self, root: Path, edition_id: str, owner: str | None = None) -> None:
        folder = edition_dir(root, edition_id)
        folder.mkdir(parents=True, exist_ok=True)
        prefix = _owner_prefix(owner) if owner is not None else ""
        self.path = folder / f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl"
        self._fd: int | None = os.open(
            self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600
        )

    def write(self, delivery_id: int, result: SendResult) -> None:
        """Write one answer down before the next message is tried; raises ValueError once
        closed."""
        if self.closed:
            raise ValueError(f"journal {self.name} is closed")
        self._append(delivery_id, result)

    def wait(self) -> None:
        """Return once every answer written is down, raising if one could not be: a file's
        lines are down when :meth:`write` returns; the store's may still be on their way."""

    @property
    def closed(self) -> bool:
        return self._fd is None

    @property
    def name(self) -> str:
        return str(self.path)

    def _append(self, delivery_id: int, result: SendResult) -> None:
        """One ``os.write`` of one short line, so a kill never half-writes anything but the
        last line (which :func:`replay` skips)."""
        assert self._fd is not None
        line: dict[str, object] = {"d": delivery_id, "s": result.status.value, "k": result.key}
        if result.provider_id:
            line["p"] = result.provider_id
        if result.reason:
            line["r"] = result.reason
        if result.bounce:
            line["b"] = 1
        if result.retry_after is not None:
            line["a"] = result.retry_after
        os.write(self._fd, (json.dumps(line, ensure_ascii=False) + "\n").encode())

    def close(self, *, remove: bool) -> None:
        """Close the file; ``remove`` once every answer in it is in the ledger."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if remove:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


# The journal's one statement, prepared once per connection and run straight through libpq:
# it is on the send path's clock (a round trip per message, each process), where the driver's
# own query handling cost as much again as the statement (measured: about 50 µs of CPU a row
# against 20).
_JOURNAL_INSERT = (
    b"INSERT INTO send_journal (owner, delivery_id, key, status, provider_id, reason, bounce, "
    b"retry_after) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
)
_JOURNAL_STATEMENT = b"digest_send_journal_insert"


class StoreJournal(Journal):
    """A sending process's journal in the store's ``send_journal`` table (PostgreSQL): one row
    per answer on a connection of its own, each committed at once (``synchronous_commit``
    off: the server has it, though not yet on its disk).

    :meth:`write` sends the row and returns; :meth:`wait` reads the server's answer (and
    raises if the row was not written), and every write waits for the one before. So a
    provider can begin the next message's exchange while the row travels, and wait only at
    its point of no return (see :func:`digest.delivery.base.ready`)."""

    def __init__(self, url: str, owner: str) -> None:
        self.owner = owner
        self._engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        raw = self._engine.raw_connection()
        conn: Any = raw.driver_connection
        conn.autocommit = True
        with contextlib.closing(raw.cursor()) as cur:
            cur.execute("SET synchronous_commit = off")
        self._raw: Any = raw
        self._encoding: str = conn.info.encoding
        self._pg: Any = conn.pgconn
        self._check(self._pg.prepare(_JOURNAL_STATEMENT, _JOURNAL_INSERT))
        self._unanswered = False  # a row sent whose answer is not read yet

    @property
    def closed(self) -> bool:
        return self._raw is None

    @property
    def name(self) -> str:
        return f"send_journal of {self.owner}"

    def _append(self, delivery_id: int, result: SendResult) -> None:
        """Send one row, committed (autocommit) by the time the server answers (read by
        :meth:`wait`); the values go as text, which the server reads by the columns' types."""
        self.wait()  # one row in flight at most
        texts = (
            self.owner,
            str(delivery_id),
            result.key,
            result.status.value,
            result.provider_id,
            result.reason,
            "t" if result.bounce else "f",
            None if result.retry_after is None else repr(float(result.retry_after)),
        )
        params = [None if v is None else self._text(v) for v in texts]
        # A blocking connection: sent (flushed) by the time this returns; raises if it could
        # not be sent.
        self._pg.send_query_prepared(_JOURNAL_STATEMENT, params)
        self._unanswered = True

    def wait(self) -> None:
        """Read the server's answer to the row sent last, if not read yet; raise unless it was
        written."""
        if not self._unanswered:
            return
        self._unanswered = False
        pg = self._pg
        pg.consume_input()
        while pg.is_busy():
            # Wait on the socket, not in libpq: this lets other threads run meanwhile (a
            # lease's heartbeat, say), which a call blocked in libpq would not.
            select.select([pg.socket], [], [])
            pg.consume_input()
        res = pg.get_result()
        while pg.get_result() is not None:  # the end of that statement's answers
            pass
        if res is None:
            raise self._failed()
        self._check(res)

    def _failed(self) -> Exception:
        from psycopg import OperationalError

        message = self._pg.error_message.decode(self._encoding, "replace").strip()
        return OperationalError(f"send journal: {message or 'no answer from the server'}")

    def _text(self, value: str) -> bytes:
        if "\x00" in value:  # libpq would cut the value there; the server refuses it anyway
            raise ValueError("PostgreSQL text cannot hold NUL characters")
        return value.encode(self._encoding)

    def _check(self, res: Any) -> None:
        """Raise the server's error unless the statement went through."""
        from psycopg import errors, pq  # the PostgreSQL extra: imported only when used

        if res.status != pq.ExecStatus.COMMAND_OK:
            raise errors.error_from_result(res, encoding=self._encoding)

    def close(self, *, remove: bool = False) -> None:
        """Close the connection (the rows stay: the record forgets them once recorded)."""
        if self._raw is not None:
            with contextlib.suppress(Exception):
                self.wait()  # a row on its way is written all the same: read its answer
            self._raw.close()
            self._raw = None
            self._engine.dispose()


# Which answer stands when a row has several (it was retried, perhaps by another process):
# a row is tried again only after a transient failure, so a final answer is the last one.
_RANK = {SendStatus.TRANSIENT: 0, SendStatus.PERMANENT: 1, SendStatus.SUBMITTED: 2}


def _ranked(out: dict[int, SendResult], delivery_id: int, result: SendResult) -> None:
    known = out.get(delivery_id)
    if known is None or _RANK[result.status] >= _RANK[known.status]:
        out[delivery_id] = result


def _files(folder: Path, owner: str | None) -> list[Path]:
    if owner is None:  # files written without an owner
        return sorted(p for p in folder.glob("*.jsonl") if "~" not in p.name)
    return sorted(folder.glob(f"{_owner_prefix(owner)}*.jsonl"))


def replay(root: Path, edition_id: str, owner: str | None = None) -> dict[int, SendResult]:
    """Every answer the journal files of ``edition_id`` written by ``owner`` hold (None: files
    written without an owner), one per row: submitted or permanent over transient, whatever
    the order of the files (each process writes its own)."""
    out: dict[int, SendResult] = {}
    folder = edition_dir(root, edition_id)
    if not folder.is_dir():
        return out
    for path in _files(folder, owner):
        try:
            raw_lines = path.read_bytes().splitlines()
        except FileNotFoundError:
            continue  # taken over (renamed) meanwhile
        for raw in raw_lines:
            try:
                line = json.loads(raw)
                delivery_id = int(line["d"])
                result = SendResult(
                    key=str(line["k"]),
                    status=SendStatus(line["s"]),
                    provider_id=str(line.get("p", "")),
                    reason=str(line.get("r", "")),
                    bounce=bool(line.get("b", 0)),
                    retry_after=line.get("a"),
                )
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash: that message counts as in flight
            _ranked(out, delivery_id, result)
    return out


def discard(root: Path, edition_id: str, owners: Iterable[str | None] | None = None) -> None:
    """Remove the edition's journal files once their answers are in the ledger: those of
    ``owners`` (None among them: files without an owner), or all of them."""
    folder = edition_dir(root, edition_id)
    if not folder.is_dir():
        return
    if owners is None:
        paths = list(folder.glob("*.jsonl"))
    else:
        paths = [p for o in owners for p in _files(folder, o)]
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    with contextlib.suppress(OSError):
        folder.rmdir()


def open_journal(root: Path, edition_id: str, owner: str, url: str) -> Journal:
    """A journal for one sending process of ``owner``: in the store when ``url`` (the store's)
    is PostgreSQL, in a file under ``root`` otherwise."""
    if url.startswith("postgresql"):
        return StoreJournal(url, owner)
    return Journal(root, edition_id, owner)


class Record:
    """An edition's crash record in journal files (one machine): what each owner's sending
    processes answered, read back when an owner settles rows cut short or taken over."""

    def __init__(self, root: Path, edition_id: str) -> None:
        self.root, self.edition_id = root, edition_id

    def replay(self, owner: str | None) -> dict[int, SendResult]:
        """What ``owner``'s journals hold, one answer per row (see :func:`replay`)."""
        return replay(self.root, self.edition_id, owner)

    def adopt(self, dead: str | None, owner: str) -> None:
        """``owner`` took over ``dead``'s rows: its journal files become ``owner``'s (so a crash
        of the new owner while settling them loses nothing either)."""
        folder = edition_dir(self.root, self.edition_id)
        if not folder.is_dir():
            return
        for path in _files(folder, dead):
            rest = path.name.partition("~")[2] if dead is not None else path.name
            with contextlib.suppress(FileNotFoundError):
                path.rename(path.with_name(_owner_prefix(owner) + rest))

    def forget(self, owner: str, delivery_ids: Iterable[int]) -> None:
        """These answers are in the ledger now (files go whole, when the owner is done)."""

    def discard(self, owner: str) -> None:
        """``owner`` is done: every answer it journaled is in the ledger."""
        discard(self.root, self.edition_id, [owner])


class StoreRecord(Record):
    """An edition's crash record in the store (PostgreSQL): the ``send_journal`` rows of its
    owners, plus any journal files left by runs before (read, then discarded, the same way)."""

    def __init__(self, root: Path, edition_id: str, engine: sa.Engine) -> None:
        super().__init__(root, edition_id)
        self.engine = engine

    def replay(self, owner: str | None) -> dict[int, SendResult]:
        out = super().replay(owner)
        if owner is None:
            return out
        j = t.send_journal.c
        q = (
            sa.select(j.delivery_id, j.key, j.status, j.provider_id, j.reason, j.bounce)
            .add_columns(j.retry_after)
            .where(j.owner == owner)
            .order_by(j.id)
        )
        with self.engine.connect() as c:
            for row in c.execute(q):
                result = SendResult(
                    key=row.key,
                    status=SendStatus(row.status),
                    provider_id=row.provider_id,
                    reason=row.reason,
                    bounce=bool(row.bounce),
                    retry_after=row.retry_after,
                )
                _ranked(out, int(row.delivery_id), result)
        return out

    def forget(self, owner: str, delivery_ids: Iterable[int]) -> None:
        ids = list(delivery_ids)
        if not ids:
            return
        # One array parameter, not one per id: a batch's worth of ids is bound and planned
        # as one value.
        ids_param = sa.bindparam("ids", ids, type_=ARRAY(sa.Integer))
        with self.engine.begin() as c:
            c.execute(
                sa.delete(t.send_journal).where(
                    t.send_journal.c.owner == owner,
                    t.send_journal.c.delivery_id == sa.any_(ids_param),
                )
            )

    def discard(self, owner: str) -> None:
        super().discard(owner)
        with self.engine.begin() as c:
            c.execute(sa.delete(t.send_journal).where(t.send_journal.c.owner == owner))
