"""Writing an edition's ledger: one pending row per subscriber who gets the edition, copied in
the database a page of ids at a time (see :meth:`LedgerPages.write_ledger`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from digest.models import DeliveryStatus, SubscriberStatus
from digest.store import schema as t
from digest.store import subscribers as people
from digest.store.base import _dialect_insert, _insert_ignore
from digest.store.subscribers import SubscriberStore


def _unset(column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """A JSON column holding nothing: SQL NULL, or JSON null (what None is written as)."""
    return sa.or_(column.is_(None), sa.cast(column, sa.Text) == "null")


# More distinct choices than this (among those not taking everything) and the ledger is written
# deciding each such row as it is read, rather than each distinct choice once.
MAX_CHOICES = 200


# Connections writing an edition's ledger side by side on PostgreSQL.
LEDGER_WRITERS = 2


def _pages(
    highest: Callable[[], int],
    size: int,
    write: Callable[[int, int], int],
    writers: int,
) -> int:
    """``write(low, high)`` for each page of ``size`` ids, (0, size], (size, 2 size], ... up
    to the ``highest`` id (asked again at the end, so subscribers who joined meanwhile are
    written too), by ``writers`` threads; the sum of what they return. The first error stops
    every writer (a page being written is finished or rolled back whole) and is raised."""
    lock = threading.Lock()
    state = {"next": 0, "top": highest(), "sum": 0}
    failed: list[BaseException] = []

    def next_page() -> tuple[int, int] | None:
        with lock:
            if failed:
                return None
            if state["next"] >= state["top"]:
                state["top"] = highest()  # joined while the ledger was written
                if state["next"] >= state["top"]:
                    return None
            low = state["next"]
            state["next"] = low + size
            return low, low + size

    def run() -> None:
        try:
            while (page := next_page()) is not None:
                left_out = write(*page)
                with lock:
                    state["sum"] += left_out
        except BaseException as e:
            with lock:
                failed.append(e)

    if writers <= 1:
        run()
    else:
        threads = [threading.Thread(target=run, name=f"ledger-{n}") for n in range(writers)]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except BaseException as e:  # interrupted: the writers stop after their page
            with lock:
                failed.append(e)
            for thread in threads:
                thread.join()
            raise
    if failed:
        raise failed[0]
    return state["sum"]


def _takes_everything() -> sa.ColumnElement[bool]:
    """A subscriber who chose neither sections nor digests: every one of both."""
    s = t.subscribers.c
    return sa.and_(_unset(s.sections), _unset(s.digests))


def _choice() -> sa.Tuple:
    """A subscriber's choice as the database compares it: its sections and digests as the JSON
    text stored, SQL NULL written as JSON ``null`` (both mean every one)."""
    s = t.subscribers.c
    return sa.tuple_(
        sa.func.coalesce(sa.cast(s.sections, sa.Text), "null"),
        sa.func.coalesce(sa.cast(s.digests, sa.Text), "null"),
    )


class LedgerPages(SubscriberStore):
    """The part of the ``deliveries`` table's store that writes an edition's ledger."""

    def write_ledger(
        self,
        edition_id: str,
        digest: str,
        wanted: Callable[[frozenset[str] | None], bool],
        *,
        now: datetime,
        size: int | None = None,
    ) -> int:
        """One pending row per active subscriber of ``digest`` whose chosen sections
        ``wanted`` accepts (None: every section), rows already there kept; returns how many
        it left out. It goes through the subscribers by id, a page of ``size`` ids (default
        ``subscribers.PAGE``) at a time, one transaction each, so memory does not grow with
        the list and a crash leaves whole pages (a re-run writes the missing ones). On
        PostgreSQL :data:`LEDGER_WRITERS` connections write pages side by side (the server
        checks each row's foreign keys, the costliest part, on as many cores); SQLite takes
        one writer at a time anyway.

        The rows are copied in the database (INSERT ... SELECT): a list has few distinct
        choices (most take everything, the rest pick among a handful of sections), so each
        distinct choice is decided once (:meth:`_decided_choices`) and the rows holding one
        that is taken are copied, those holding one that is not are counted. Only a row whose
        choice was not seen then (changed meanwhile, or a list of more than
        :data:`MAX_CHOICES` choices) is read and decided here."""
        s = t.subscribers.c
        size = size or people.PAGE
        active = s.status == SubscriberStatus.ACTIVE.value
        everything = _takes_everything()
        choice = _choice()
        taken, dropped, others = self._decided_choices(digest, wanted)
        copy = sa.or_(everything, choice.in_(taken)) if taken else everything
        undecided = [~everything]
        if taken or dropped or others:
            undecided.append(choice.not_in([*taken, *dropped, *others]))
        columns = ["edition_id", "subscriber_id", "status", "attempts", "created_at", "updated_at"]

        postgres = self.engine.dialect.name == "postgresql"
        one_view: dict[str, Any] = {"isolation_level": "REPEATABLE READ"} if postgres else {}

        def write_page(low: int, high: int) -> int:
            """The rows of subscribers with ids in (low, high]; how many were left out."""
            page = [active, s.id > low, s.id <= high]
            left_out = 0
            # One snapshot for the page's statements: someone changing their choice between
            # the copy and the count is then neither missed nor counted twice (SQLite's write
            # lock already gives the page one view).
            with self.engine.connect().execution_options(**one_view) as c, c.begin():
                copied = sa.select(
                    sa.literal(edition_id, sa.String),
                    s.id,
                    sa.literal(DeliveryStatus.PENDING.value, sa.String),
                    sa.literal(0, sa.Integer),
                    sa.literal(now, t.UTCDateTime()),
                    sa.literal(now, t.UTCDateTime()),
                ).where(*page, copy)
                c.execute(
                    _dialect_insert(c)(t.deliveries)
                    .from_select(columns, copied)
                    .on_conflict_do_nothing(index_elements=["edition_id", "subscriber_id"])
                )
                if dropped:
                    counted = sa.select(sa.func.count()).where(*page, choice.in_(dropped))
                    left_out += c.execute(counted).scalar_one()
                ids = []
                for sid, sections, digests in c.execute(
                    sa.select(s.id, s.sections, s.digests).where(*page, *undecided).order_by(s.id)
                ):
                    if digests is not None and digest not in digests:
                        continue
                    if wanted(None if sections is None else frozenset(sections)):
                        ids.append(sid)
                    else:
                        left_out += 1
                rows = self._pending(edition_id, ids, now)
                _insert_ignore(c, t.deliveries, rows, ["edition_id", "subscriber_id"])
            return left_out

        writers = LEDGER_WRITERS if postgres else 1
        return _pages(self._highest_subscriber_id, size, write_page, writers)

    def _highest_subscriber_id(self) -> int:
        with self.engine.connect() as c:
            return int(c.execute(sa.select(sa.func.max(t.subscribers.c.id))).scalar() or 0)

    def _decided_choices(
        self, digest: str, wanted: Callable[[frozenset[str] | None], bool]
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]]]:
        """The distinct choices (:func:`_choice`) of active subscribers who do not take
        everything, decided for ``digest``: those taken, those ``wanted`` leaves out, and those
        of other digests only. All three empty when there are more than :data:`MAX_CHOICES`
        (each row is then decided as it is read)."""
        s = t.subscribers.c
        choice = _choice()
        query = (
            sa.select(choice.clauses[0], choice.clauses[1])
            .where(
                s.status == SubscriberStatus.ACTIVE.value,
                ~_takes_everything(),
            )
            .distinct()
            .limit(MAX_CHOICES + 1)
        )
        with self.engine.connect() as c:
            pairs = [(a, b) for a, b in c.execute(query)]
        taken: list[tuple[str, str]] = []
        dropped: list[tuple[str, str]] = []
        others: list[tuple[str, str]] = []
        if len(pairs) > MAX_CHOICES:
            return taken, dropped, others
        for sections_text, digests_text in pairs:
            sections, digests = people._json(sections_text), people._json(digests_text)
            if digests is not None and digest not in digests:
                others.append((sections_text, digests_text))
            elif wanted(None if sections is None else frozenset(sections)):
                taken.append((sections_text, digests_text))
            else:
                dropped.append((sections_text, digests_text))
        return taken, dropped, others

    @staticmethod
    def _pending(edition_id: str, ids: Iterable[int], now: datetime) -> list[dict[str, Any]]:
        return [
            {
                "edition_id": edition_id,
                "subscriber_id": sid,
                "status": DeliveryStatus.PENDING.value,
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
            for sid in dict.fromkeys(ids)
        ]
