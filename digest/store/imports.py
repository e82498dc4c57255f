"""Subscribers in bulk: an import written chunk by chunk, an export read page by page.

An import stages each chunk of rows in a temporary table (PostgreSQL: ``COPY`` into a table
emptied at each commit, with no index; SQLite: one ``executemany``) and applies it in one
transaction per chunk: an address an earlier row of the file listed is found in a second
temporary table that keeps each address's first line (so the file's addresses are held by the
database, not in memory); then existing active subscribers are updated where their name or
choices changed, those not active counted and kept as they are (an import never re-subscribes
anyone), and new ones inserted with their audit row. On PostgreSQL that is one statement per
chunk (``_APPLY_POSTGRESQL``: one ``INSERT … ON CONFLICT … DO UPDATE … RETURNING`` and index
probes only, so a chunk costs the same however many subscribers are in); on SQLite a few
set-wise statements (``ON CONFLICT DO NOTHING`` for the new ones). Either way a sign-up of the
same address at the same moment wins: it is not active, so the import leaves it as it is. A
crash loses at most the chunk in flight, and running the import again completes it: rows
already in are unchanged.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa

from digest.models import NewSubscriber, Subscriber, SubscriberStatus
from digest.store import schema as t
from digest.store.subscribers import (
    IMPORT_STEP,
    ImportCounts,
    SubscriberStore,
    _keys,
    email_key,
    new_token_id,
)

# Rows an export reads per query (keyset pages: ``id > last``).
EXPORT_PAGE = 5_000

_STAGE = sa.MetaData()
# One chunk of the file, as read.
_chunk = sa.Table(
    "import_chunk",
    _STAGE,
    sa.Column("line", sa.Integer, nullable=False),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("email_key", sa.Text, nullable=False),
    sa.Column("token_id", sa.BigInteger, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("sections", sa.Text, nullable=False),
    sa.Column("digests", sa.Text, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    prefixes=["TEMPORARY"],
    # PostgreSQL empties it at each commit (a truncation: no dead rows pile up chunk after chunk).
    postgresql_on_commit="DELETE ROWS",
)
# Every address the file listed so far, with the line that listed it first.
_seen = sa.Table(
    "import_seen",
    _STAGE,
    sa.Column("email_key", sa.Text, primary_key=True),
    sa.Column("line", sa.Integer, nullable=False),
    prefixes=["TEMPORARY"],
)
_COLUMNS = [c.name for c in _chunk.columns]

# SQLite: the rows an earlier one listed, in this chunk or an earlier one.
_DUPLICATES = sa.text(
    """
    SELECT c.line, COALESCE(s.line, f.first) FROM import_chunk c
    LEFT JOIN import_seen s ON s.email_key = c.email_key
    LEFT JOIN (
        SELECT email_key, MIN(line) AS first FROM import_chunk
        GROUP BY email_key HAVING COUNT(*) > 1
    ) f ON f.email_key = c.email_key
    WHERE s.line IS NOT NULL OR c.line > f.first
    """
)
_REMEMBER = sa.text(
    "INSERT INTO import_seen (email_key, line) "
    "SELECT email_key, MIN(line) FROM import_chunk GROUP BY email_key "
    "ON CONFLICT (email_key) DO NOTHING"
)
_KEPT = sa.text(
    "SELECT COUNT(*) FROM import_chunk c JOIN subscribers s ON s.email_key = c.email_key "
    "WHERE s.status <> :active"
)
# SQLite: the active subscribers whose name or choices changed (JSON compared as values: NULL
# and JSON null are both "every section" or digest), then the new ones.
_UPDATE_SQLITE = """
    UPDATE subscribers
    SET name = c.name, sections = c.sections, digests = c.digests, updated_at = :now
    FROM import_chunk AS c
    WHERE subscribers.email_key = c.email_key AND subscribers.status = :active AND (
        subscribers.name IS NOT c.name
        OR COALESCE(json(subscribers.sections), 'null') IS NOT json(c.sections)
        OR COALESCE(json(subscribers.digests), 'null') IS NOT json(c.digests))
"""
_ADD_SQLITE = """
    INSERT INTO subscribers
        (email, email_key, token_id, name, status, sections, digests, source, created_at,
         updated_at)
    SELECT c.email, c.email_key, c.token_id, c.name, :active, c.sections, c.digests, :source,
        :now, :now
    FROM import_chunk c WHERE true ORDER BY c.line
    ON CONFLICT (email_key) DO NOTHING RETURNING id
"""

# PostgreSQL: the whole chunk in one statement. Every lookup is an index probe per staged row
# (``LATERAL … LIMIT 1`` on a unique key, and the upsert's own arbiter index): the work of a
# chunk does not grow with the subscribers already in. ``chunk``: each row with the first line of
# its address in this chunk and the line an earlier chunk listed it on; ``todo``: the rows to
# write (importable, and the first listing of their address in the file); ``kept``: those whose
# subscriber is not active (as the statement's snapshot sees them: before the upsert). The upsert
# updates only active subscribers whose name or choices changed (JSON compared as values: NULL
# and JSON null are both "every section" or digest) and returns the rows it wrote, ``xmax = 0``
# for an insert. One result row holds the counts (no line); the others the duplicates.
_APPLY_POSTGRESQL = """
    WITH chunk AS (
        SELECT c.*, MIN(c.line) OVER (PARTITION BY c.email_key) AS first, seen.line AS seen
        FROM import_chunk c
        LEFT JOIN LATERAL (
            SELECT s.line FROM import_seen s WHERE s.email_key = c.email_key LIMIT 1
        ) seen ON true
    ),
    remembered AS (
        INSERT INTO import_seen (email_key, line)
        SELECT email_key, line FROM chunk WHERE seen IS NULL AND line = first
    ),
    todo AS (SELECT * FROM chunk WHERE ok AND seen IS NULL AND line = first),
    kept AS (
        SELECT COUNT(*) AS n FROM todo t
        JOIN LATERAL (
            SELECT s.status FROM subscribers s WHERE s.email_key = t.email_key LIMIT 1
        ) s ON s.status <> :active
    ),
    written AS (
        INSERT INTO subscribers AS s
            (email, email_key, token_id, name, status, sections, digests, source, created_at,
             updated_at)
        SELECT email, email_key, token_id, name, :active, sections::json, digests::json,
            :source, :now, :now
        FROM todo ORDER BY line
        ON CONFLICT (email_key) DO UPDATE
        SET name = excluded.name, sections = excluded.sections, digests = excluded.digests,
            updated_at = excluded.updated_at
        WHERE s.status = :active AND (
            s.name IS DISTINCT FROM excluded.name
            OR COALESCE(s.sections::jsonb, 'null'::jsonb) <> excluded.sections::jsonb
            OR COALESCE(s.digests::jsonb, 'null'::jsonb) <> excluded.digests::jsonb)
        RETURNING s.id, s.xmax = 0 AS added
    ),
    events AS (
        INSERT INTO subscriber_events (subscriber_id, at, old_status, new_status, cause)
        SELECT id, :now, NULL, :active, :cause FROM written WHERE added
    )
    SELECT NULL, NULL, (SELECT COUNT(*) FROM written WHERE added),
        (SELECT COUNT(*) FROM written WHERE NOT added), (SELECT n FROM kept)
    UNION ALL
    SELECT line, COALESCE(seen, first), NULL, NULL, NULL FROM chunk
    WHERE seen IS NOT NULL OR line > first
"""

# SQLite: the audit rows of the ids the insert returned (a JSON list).
_SQLITE_EVENTS = """
    INSERT INTO subscriber_events (subscriber_id, at, old_status, new_status, cause)
    SELECT value, :now, NULL, :active, :cause FROM json_each(:ids)
"""


class StagedRow(Protocol):
    """A row of a list as the import stages it (``digest.audience.csv_import.CsvRow``)."""

    @property
    def line(self) -> int: ...
    @property
    def email(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def sections(self) -> frozenset[str] | None: ...
    @property
    def digests(self) -> frozenset[str] | None: ...
    @property
    def importable(self) -> bool: ...


@dataclass(frozen=True)
class ChunkOutcome:
    """What one chunk did: its rows whose address an earlier row listed (line → that row's
    line), and the counts of the others it imported."""

    duplicates: dict[int, int]
    counts: ImportCounts


@dataclass(frozen=True, slots=True)
class _Person:
    """A NewSubscriber staged (``line``: its place in the list)."""

    line: int
    email: str
    key: str
    name: str
    sections: frozenset[str] | None
    digests: frozenset[str] | None
    importable: bool = True


@functools.lru_cache(maxsize=1024)
def _json_keys(keys: frozenset[str] | None) -> str:
    """Chosen keys as the store writes them (SQLAlchemy's JSON: ``null`` for every one)."""
    return json.dumps(_keys(keys))


class ImportSession:
    """One import on one connection: ``add`` applies a chunk in its own transaction."""

    def __init__(self, c: sa.Connection, *, now: datetime, source: str) -> None:
        self._c = c
        self._dialect = c.dialect.name
        self._params = {
            "now": now,
            "source": source,
            "cause": f"added by {source}",
            "active": SubscriberStatus.ACTIVE.value,
        }
        at = sa.bindparam("now", type_=t.UTCDateTime)
        self._apply = sa.text(_APPLY_POSTGRESQL).bindparams(at)
        self._update = sa.text(_UPDATE_SQLITE).bindparams(at)
        self._add = sa.text(_ADD_SQLITE).bindparams(at)
        self._events = sa.text(_SQLITE_EVENTS).bindparams(at)

    def add(self, rows: Sequence[StagedRow]) -> ChunkOutcome:
        """Stage ``rows`` (in the file's order) and apply them (see the module's docstring)."""
        c, p = self._c, self._params
        if not rows:
            return ChunkOutcome({}, ImportCounts(0, 0, 0))
        with c.begin():
            if self._dialect == "postgresql":
                self._stage(rows)
                return self._apply_postgresql()
            c.execute(sa.delete(_chunk))
            self._stage(rows)
            duplicates: dict[int, int] = {int(a): int(b) for a, b in c.execute(_DUPLICATES)}
            c.execute(_REMEMBER)
            if duplicates:
                c.execute(sa.delete(_chunk).where(_chunk.c.line.in_(list(duplicates))))
            c.execute(sa.delete(_chunk).where(_chunk.c.ok.is_(False)))
            kept = int(c.execute(_KEPT, p).scalar() or 0)
            updated = c.execute(self._update, p).rowcount
            ids = [r[0] for r in c.execute(self._add, p)]
            added = len(ids)
            if ids:
                c.execute(self._events, {**p, "ids": json.dumps(ids)})
        return ChunkOutcome(duplicates, ImportCounts(added, updated, kept))

    def _apply_postgresql(self) -> ChunkOutcome:
        duplicates: dict[int, int] = {}
        counts = ImportCounts(0, 0, 0)
        for line, first, added, updated, kept in self._c.execute(self._apply, self._params):
            if line is None:
                counts = ImportCounts(int(added), int(updated), int(kept))
            else:
                duplicates[int(line)] = int(first)
        return ChunkOutcome(duplicates, counts)

    def _stage(self, rows: Iterable[StagedRow]) -> None:
        staged = (
            (
                r.line,
                r.email,
                r.key,
                new_token_id(),
                r.name,
                _json_keys(r.sections),
                _json_keys(r.digests),
                r.importable,
            )
            for r in rows
        )
        columns = ", ".join(_COLUMNS)
        if self._dialect == "postgresql":
            raw: Any = self._c.connection.driver_connection
            with raw.cursor() as cur, cur.copy(f"COPY import_chunk ({columns}) FROM STDIN") as cp:
                for row in staged:
                    cp.write_row(row)
        else:
            marks = ", ".join("?" for _ in _COLUMNS)
            self._c.exec_driver_sql(
                f"INSERT INTO import_chunk ({columns}) VALUES ({marks})", list(staged)
            )


class ImportStore(SubscriberStore):
    """Bulk import and export of subscribers (see the module's docstring), on the subscriber
    store's rows and pages."""

    def import_subscribers(
        self,
        people: Sequence[NewSubscriber],
        *,
        now: datetime,
        source: str = "import",
        progress: Callable[[int], None] | None = None,
    ) -> ImportCounts:
        """Add or update subscribers by address (an idempotent upsert), ``IMPORT_STEP`` at a
        time. Anyone not active stays as they are: an import never re-subscribes an address
        that left, bounced, complained, paused or has not confirmed; only double opt-in does.
        An address listed twice is read once, where it is first. ``progress`` hears how many
        people were done after each step."""
        added = updated = kept = 0
        with self.subscriber_import(now=now, source=source) as session:
            for start in range(0, len(people), IMPORT_STEP):
                step = people[start : start + IMPORT_STEP]
                rows = [
                    _Person(
                        start + n,
                        p.email.strip(),
                        email_key(p.email),
                        p.name,
                        p.sections,
                        p.digests,
                    )
                    for n, p in enumerate(step)
                ]
                counts = session.add(rows).counts
                added, updated = added + counts.added, updated + counts.updated
                kept += counts.kept_unsubscribed
                if progress:
                    progress(start + len(step))
        return ImportCounts(added=added, updated=updated, kept_unsubscribed=kept)

    @contextmanager
    def subscriber_import(self, *, now: datetime, source: str) -> Iterator[ImportSession]:
        """An import session: its staging tables live as long as it does."""
        with self.engine.connect() as c:
            tables = [_chunk, _seen]
            with c.begin():
                _STAGE.drop_all(c, tables=tables)
                _STAGE.create_all(c, tables=tables)
            try:
                yield ImportSession(c, now=now, source=source)
            finally:
                if c.in_transaction():
                    c.rollback()
                with c.begin():
                    _STAGE.drop_all(c, tables=tables)

    def export_subscribers(
        self, statuses: Iterable[SubscriberStatus] | None = None
    ) -> Iterator[tuple[Subscriber, datetime | None, datetime | None]]:
        """Every subscriber (or those in ``statuses``), oldest first, with when each was added
        and last changed; read ``EXPORT_PAGE`` at a time, so memory does not grow with the
        list."""
        q = sa.select(t.subscribers)
        if statuses is not None:
            q = q.where(t.subscribers.c.status.in_([x.value for x in statuses]))
        for rows in self._pages(q, EXPORT_PAGE):
            for r in rows:
                yield self._subscriber(r), r.created_at, r.updated_at
