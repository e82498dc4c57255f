"""The delivery ledger: one row per (edition, subscriber), claimed for sending, settled with
the provider's answer, retried or given back.

Each claim belongs to an owner (a sending run or shard, ``deliveries.claimed_by``) whose claim
lease lives in ``locks``: only the owner records its rows' answers, and another owner takes a
dead one's rows over (:meth:`LedgerStore.take_over`) once that lease has run out. Each answer is
first written to the owner's send journal (:mod:`digest.store.journal`) the moment it is known;
``mark_results`` then records a batch of them here in one transaction, and the owner taking
over a dead one records what its journal holds for rows still ``sending``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from digest.models import DeliveryStatus, SendResult, SendStatus, Subscriber, SubscriberStatus
from digest.store import schema as t
from digest.store import subscribers as people
from digest.store.base import _insert_ignore
from digest.store.ledger_pages import LedgerPages
from digest.store.locks import claim_lock, stale

# Kinds of failed ledger rows (deliveries.failure).
TRANSIENT, PERMANENT, EXHAUSTED = "transient", "permanent", "exhausted"
FAILURES = (TRANSIENT, PERMANENT, EXHAUSTED)


@dataclass(frozen=True)
class Claimed:
    """A ledger row claimed for sending, with the subscriber it is for."""

    delivery_id: int
    subscriber: Subscriber
    attempts: int = 1  # tries of this row so far, this one included


def _claimed_by(owner: str | None, *, none_is_any: bool = True) -> sa.ColumnElement[bool]:
    """Rows claimed by ``owner``; for None, any row (``none_is_any``) or rows claimed by no
    owner."""
    if owner is not None:
        return t.deliveries.c.claimed_by == owner
    return sa.true() if none_is_any else t.deliveries.c.claimed_by.is_(None)


def _claim_statement(
    edition_id: str, limit: int, now: datetime, owner: str | None, after: int = 0
) -> sa.Select[Any]:
    """PostgreSQL's claim in one statement (one round trip a batch): up to ``limit`` pending
    rows of active subscribers, by id, locked as they are picked (rows another claimer holds
    are skipped, not waited for), moved to ``sending`` for ``owner`` with one more attempt,
    and returned with their subscribers by delivery id. Under the row locks a picked row is
    still pending when the UPDATE reaches it; the UPDATE checks it anyway. Only rows after id
    ``after`` are looked at (see :meth:`LedgerStore.claim_batch`)."""
    d, s = t.deliveries, t.subscribers
    pending = DeliveryStatus.PENDING.value
    picked = (
        sa.select(d.c.id)
        .join(s, s.c.id == d.c.subscriber_id)
        .where(d.c.edition_id == edition_id)
        .where(d.c.status == pending)
        .where(d.c.id > after)
        .where(s.c.status == SubscriberStatus.ACTIVE.value)
        .order_by(d.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=d)
        .cte("picked")
    )
    picked_ids = sa.select(sa.func.array_agg(picked.c.id)).scalar_subquery()
    claimed = (
        sa.update(d)
        # The picked ids as one array, each row then found by primary key: a join here would
        # leave the plan to statistics, which early in a send (every row pending) can make a
        # scan of the whole table look cheaper.
        .where(d.c.id == sa.any_(sa.cast(picked_ids, ARRAY(sa.Integer))))
        .where(d.c.status == pending)
        .values(
            status=DeliveryStatus.SENDING.value,
            attempts=d.c.attempts + 1,
            claimed_by=owner,
            updated_at=now,
        )
        .returning(d.c.id, d.c.attempts, d.c.subscriber_id)
        .cte("claimed")
    )
    return (
        sa.select(claimed.c.id.label("delivery_id"), claimed.c.attempts, *people.SUBSCRIBER_COLUMNS)
        .join(s, s.c.id == claimed.c.subscriber_id)
        .order_by(claimed.c.id)
    )


class LedgerStore(LedgerPages):
    """The ``deliveries`` table. It builds on the subscribers' part: a claim returns each row's
    subscriber, and a hard bounce suppresses one."""

    def create_deliveries(
        self, edition_id: str, subscriber_ids: Iterable[int], *, now: datetime
    ) -> int:
        """One pending row per (edition, subscriber) of ``subscriber_ids`` not yet in the
        ledger; returns how many. A helper for small stores (tests, a hand-made ledger): an
        edition's ledger is written by :meth:`write_ledger`, a page at a time."""
        rows = self._pending(edition_id, subscriber_ids, now)
        with self.engine.begin() as c:
            return _insert_ignore(c, t.deliveries, rows, ["edition_id", "subscriber_id"])

    def skip_inactive(self, edition_id: str, *, now: datetime) -> int:
        """Close the unsent rows of subscribers who left or were suppressed since they were
        written: they are never sent."""
        inactive = sa.select(t.subscribers.c.id).where(
            t.subscribers.c.status != SubscriberStatus.ACTIVE.value
        )
        with self.engine.begin() as c:
            res = c.execute(
                sa.update(t.deliveries)
                .where(t.deliveries.c.edition_id == edition_id)
                .where(
                    sa.or_(
                        t.deliveries.c.status == DeliveryStatus.PENDING.value,
                        self._failed(TRANSIENT),
                        self._failed(EXHAUSTED),
                    )
                )
                .where(t.deliveries.c.subscriber_id.in_(inactive))
                .values(
                    status=DeliveryStatus.SKIPPED.value,
                    error="subscriber no longer active",
                    updated_at=now,
                )
            )
        return res.rowcount or 0

    def sending_owners(self, edition_id: str) -> dict[str | None, int]:
        """The owners of the edition's rows in ``sending``, with how many each holds (None:
        rows claimed without an owner, by a run before owners)."""
        q = (
            sa.select(t.deliveries.c.claimed_by, sa.func.count())
            .where(t.deliveries.c.edition_id == edition_id)
            .where(t.deliveries.c.status == DeliveryStatus.SENDING.value)
            .group_by(t.deliveries.c.claimed_by)
        )
        with self.engine.connect() as c:
            return {owner: int(n) for owner, n in c.execute(q)}

    def dead_owners(self, edition_id: str) -> list[str | None]:
        """Owners holding ``sending`` rows of the edition whose claim lease is gone, out of
        time, or held by a process of this host that died; None for rows without an owner."""
        owners = self.sending_owners(edition_id)
        names = [claim_lock(o) for o in owners if o is not None]
        now = datetime.now(UTC)
        with self.engine.connect() as c:
            held = {
                r.name: r for r in c.execute(sa.select(t.locks).where(t.locks.c.name.in_(names)))
            }
        return [
            o
            for o in owners
            if o is None or claim_lock(o) not in held or stale(held[claim_lock(o)], now)
        ]

    def take_over(
        self, edition_id: str, dead: str | None, owner: str, *, now: datetime
    ) -> list[int]:
        """Make ``owner`` the owner of the rows the dead owner ``dead`` left in ``sending``,
        and of its send journal in the store; returns the rows it took.

        One transaction: the dead owner's claim lease is deleted first (unless it was renewed
        meanwhile: then nothing is taken), so its holder, should it still run, finds the
        lease lost at its next renewal and stops, and records nothing for rows it no longer
        owns. The new owner then settles the rows from the journal as the dead one would have.
        """
        wall = datetime.now(UTC)
        with self.engine.begin() as c:
            if dead is not None:
                name = claim_lock(dead)
                held = c.execute(
                    sa.select(t.locks).where(t.locks.c.name == name).with_for_update()
                ).first()
                if held is not None:
                    if not stale(held, wall):
                        return []  # alive after all: its rows stay its own
                    c.execute(sa.delete(t.locks).where(t.locks.c.name == name))
            moved = c.execute(
                sa.update(t.deliveries)
                .where(t.deliveries.c.edition_id == edition_id)
                .where(t.deliveries.c.status == DeliveryStatus.SENDING.value)
                .where(_claimed_by(dead, none_is_any=False))
                .values(claimed_by=owner, updated_at=now)
                .returning(t.deliveries.c.id)
            )
            ids = [int(r[0]) for r in moved]
            if dead is not None:
                c.execute(
                    sa.update(t.send_journal)
                    .where(t.send_journal.c.owner == dead)
                    .values(owner=owner)
                )
        return ids

    def release(
        self, delivery_ids: Iterable[int], *, now: datetime, owner: str | None = None
    ) -> None:
        """Give claimed rows back (nothing of them was sent): the claim's attempt is undone.
        With ``owner``, only rows still claimed by it."""
        ids = list(delivery_ids)
        if not ids:
            return
        attempts = t.deliveries.c.attempts
        with self.engine.begin() as c:
            c.execute(
                sa.update(t.deliveries)
                .where(t.deliveries.c.id.in_(ids))
                .where(t.deliveries.c.status == DeliveryStatus.SENDING.value)
                .where(_claimed_by(owner))
                .values(
                    status=DeliveryStatus.PENDING.value,
                    attempts=sa.case((attempts > 0, attempts - 1), else_=0),
                    updated_at=now,
                )
            )

    def in_flight(self, delivery_ids: Iterable[int], owner: str | None = None) -> dict[int, int]:
        """Of these rows, those still ``sending`` (with ``owner``: claimed by it), with how
        often each has been tried."""
        ids = list(delivery_ids)
        q = sa.select(t.deliveries.c.id, t.deliveries.c.attempts).where(
            t.deliveries.c.id.in_(ids),
            t.deliveries.c.status == DeliveryStatus.SENDING.value,
            _claimed_by(owner),
        )
        with self.engine.connect() as c:
            return {int(i): int(n) for i, n in c.execute(q)}

    def _failed(self, kind: str) -> sa.ColumnElement[bool]:
        return sa.and_(
            t.deliveries.c.status == DeliveryStatus.FAILED.value, t.deliveries.c.failure == kind
        )

    def requeue_due(self, edition_id: str, *, now: datetime) -> int:
        """Put transient failures whose next attempt time has come back in the queue."""
        with self.engine.begin() as c:
            res = c.execute(
                sa.update(t.deliveries)
                .where(t.deliveries.c.edition_id == edition_id)
                .where(self._failed(TRANSIENT))
                .where(
                    sa.or_(
                        t.deliveries.c.next_attempt_at.is_(None),
                        t.deliveries.c.next_attempt_at <= now,
                    )
                )
                .values(status=DeliveryStatus.PENDING.value, updated_at=now)
            )
        return res.rowcount or 0

    def next_retry_at(self, edition_id: str) -> datetime | None:
        """When the earliest transient failure of the edition may be tried again."""
        q = sa.select(sa.func.min(t.deliveries.c.next_attempt_at)).where(
            t.deliveries.c.edition_id == edition_id, self._failed(TRANSIENT)
        )
        with self.engine.connect() as c:
            value: datetime | None = c.execute(q).scalar()
        return value

    def requeue_exhausted(self, edition_id: str, *, now: datetime) -> int:
        """An operator's "try those again": rows that ran out of attempts start over."""
        with self.engine.begin() as c:
            res = c.execute(
                sa.update(t.deliveries)
                .where(t.deliveries.c.edition_id == edition_id)
                .where(self._failed(EXHAUSTED))
                .values(
                    status=DeliveryStatus.PENDING.value,
                    failure=None,
                    attempts=0,
                    next_attempt_at=None,
                    updated_at=now,
                )
            )
        return res.rowcount or 0

    def claim_batch(
        self,
        edition_id: str,
        limit: int,
        *,
        now: datetime,
        owner: str | None = None,
        after: int = 0,
    ) -> list[Claimed]:
        """Move up to ``limit`` pending rows of active subscribers to ``sending``, claimed by
        ``owner``, the first by id after ``after`` (a claimer passes the last id it claimed:
        the rows before it were sent or are being sent, and a claim that skipped them by index
        would still walk their dead index entries on PostgreSQL, a cost growing with the list),
        or, when there are none after it, the first from the start (rows given back or due
        again).

        On PostgreSQL a claim is one statement (:func:`_claim_statement`): candidates are
        locked as they are picked, so concurrent claimers skip each other's rows instead of
        waiting, and never share one. On SQLite the UPDATE re-checks ``pending`` and returns
        the ids it changed, so a row is claimed by one caller only, even if two select the same
        candidates; a caller whose every candidate was taken meanwhile (another claim committed
        between its SELECT and its UPDATE) selects again. Either way an empty answer means
        nothing is pending but rows another claimer is taking at that moment.
        """
        while True:
            claimed = self._claim_once(edition_id, limit, now=now, owner=owner, after=after)
            if claimed is None:
                continue
            if claimed or not after:
                return claimed
            after = 0

    def _claim_once(
        self, edition_id: str, limit: int, *, now: datetime, owner: str | None, after: int
    ) -> list[Claimed] | None:
        """One try of :meth:`claim_batch`; None when candidates were found but another caller
        claimed them all first (SQLite only: PostgreSQL's claim locks what it picks)."""
        with self.engine.begin() as c:
            if c.dialect.name == "postgresql":
                return [
                    self._claimed(r)
                    for r in c.execute(_claim_statement(edition_id, limit, now, owner, after))
                ]
            q = (
                sa.select(t.deliveries.c.id)
                .join(t.subscribers, t.subscribers.c.id == t.deliveries.c.subscriber_id)
                .where(t.deliveries.c.edition_id == edition_id)
                .where(t.deliveries.c.status == DeliveryStatus.PENDING.value)
                .where(t.deliveries.c.id > after)
                .where(t.subscribers.c.status == SubscriberStatus.ACTIVE.value)
                .order_by(t.deliveries.c.id)
                .limit(limit)
            )
            candidates = [r[0] for r in c.execute(q)]
            if not candidates:
                return []
            claimed = [
                r[0]
                for r in c.execute(
                    sa.update(t.deliveries)
                    .where(t.deliveries.c.id.in_(candidates))
                    .where(t.deliveries.c.status == DeliveryStatus.PENDING.value)
                    .values(
                        status=DeliveryStatus.SENDING.value,
                        attempts=t.deliveries.c.attempts + 1,
                        claimed_by=owner,
                        updated_at=now,
                    )
                    .returning(t.deliveries.c.id)
                )
            ]
            if not claimed:
                return None
            rows = c.execute(
                sa.select(
                    t.deliveries.c.id.label("delivery_id"),
                    t.deliveries.c.attempts,
                    *people.SUBSCRIBER_COLUMNS,
                )
                .join(t.subscribers, t.subscribers.c.id == t.deliveries.c.subscriber_id)
                .where(t.deliveries.c.id.in_(claimed))
                .order_by(t.deliveries.c.id)
            ).all()
        return [self._claimed(r) for r in rows]

    def _claimed(self, row: Any) -> Claimed:
        """A claimed row from ``delivery_id``, ``attempts`` and ``SUBSCRIBER_COLUMNS`` (the
        subscriber's ``id`` is the only ``id``)."""
        return Claimed(
            delivery_id=int(row.delivery_id),
            subscriber=self._subscriber(row),
            attempts=int(row.attempts),
        )

    def mark_results(
        self,
        results: Mapping[int, SendResult],
        *,
        now: datetime,
        retry_at: Mapping[int, datetime] | None = None,
        owner: str | None = None,
    ) -> list[int]:
        """Record a provider's answers in one transaction; returns the subscribers suppressed.

        Only rows still ``sending`` change, so an answer replayed from a journal never
        overwrites a newer state; with ``owner``, only rows it still claims (an owner whose
        rows were taken over records nothing). A transient failure with a time in
        ``retry_at`` waits for it; one without is out of attempts (``exhausted``). A hard
        bounce suppresses the subscriber (recorded in the audit table with the provider's
        reason).
        """
        retry_at = retry_at or {}
        done: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for delivery_id, res in results.items():
            if res.status is SendStatus.SUBMITTED:
                done.append({"b_id": delivery_id, "b_provider_id": res.provider_id})
                continue
            if res.status is SendStatus.PERMANENT:
                kind, when = PERMANENT, None
            elif delivery_id in retry_at:
                kind, when = TRANSIENT, retry_at[delivery_id]
            else:
                kind, when = EXHAUSTED, None
            failed.append(
                {"b_id": delivery_id, "b_failure": kind, "b_error": res.reason, "b_next": when}
            )
        bounced = [i for i, r in results.items() if r.bounce and r.status is SendStatus.PERMANENT]
        still_sending = sa.and_(
            t.deliveries.c.status == DeliveryStatus.SENDING.value, _claimed_by(owner)
        )
        with self.engine.begin() as c:
            if done:
                self._mark_submitted(c, done, now, owner)
            if failed:
                c.execute(
                    sa.update(t.deliveries)
                    .where(t.deliveries.c.id == sa.bindparam("b_id"), still_sending)
                    .values(
                        status=DeliveryStatus.FAILED.value,
                        failure=sa.bindparam("b_failure"),
                        error=sa.bindparam("b_error"),
                        next_attempt_at=sa.bindparam("b_next", type_=t.UTCDateTime()),
                        updated_at=now,
                    ),
                    failed,
                )
            if not bounced:
                return []
            owners = dict(
                c.execute(
                    sa.select(t.deliveries.c.id, t.deliveries.c.subscriber_id).where(
                        t.deliveries.c.id.in_(bounced)
                    )
                ).all()
            )
            causes = {owners[i]: f"hard bounce: {results[i].reason}" for i in bounced}
            return self._set_statuses(
                c,
                causes,
                SubscriberStatus.BOUNCED,
                now=now,
                causes=causes,
                only_from=SubscriberStatus.ACTIVE,
            )

    @staticmethod
    def _mark_submitted(
        c: sa.Connection, done: list[dict[str, Any]], now: datetime, owner: str | None
    ) -> None:
        """Rows still ``sending`` (with ``owner``: still claimed by it) become submitted with
        their provider's ids. The run records every batch of an edition, so this is on the send
        path's clock: one plain statement the driver runs for every row on SQLite, one statement
        for the batch (ids and provider ids as arrays) on PostgreSQL, the values already as the
        driver takes them."""
        stamp = t.deliveries.c.updated_at.type
        to_db = stamp.dialect_impl(c.dialect).bind_processor(c.dialect)
        at = to_db(now) if to_db else now
        submitted, sending = DeliveryStatus.SUBMITTED.value, DeliveryStatus.SENDING.value
        rest = "failure = NULL, error = NULL, next_attempt_at = NULL"
        if c.dialect.name == "postgresql":
            mine = "" if owner is None else " AND claimed_by = %(owner)s"
            # The rows by primary key (``id = ANY``), each one's provider id looked up in the
            # array: no join, so no join order for the planner to get wrong. It would, with a
            # join: statistics taken while every row was pending (or before this owner
            # existed) make ``sending`` rows of this owner look like one, and a plan
            # reading them first then matches each against every id of the batch (measured:
            # 0.4 s a batch of 500 instead of 5 ms). IS NOT DISTINCT FROM (the column is NOT
            # NULL: the same as =) keeps the status index out of it for the same reason.
            c.exec_driver_sql(
                f"UPDATE deliveries SET status = '{submitted}', "
                "provider_id = (%(pids)s::text[])[array_position(%(ids)s::integer[], id)], "
                f"submitted_at = %(at)s, updated_at = %(at)s, {rest} "
                "WHERE id = ANY(%(ids)s::integer[]) "
                f"AND status IS NOT DISTINCT FROM '{sending}'{mine}",
                {
                    "at": at,
                    "ids": [d["b_id"] for d in done],
                    "pids": [d["b_provider_id"] for d in done],
                    "owner": owner,
                },
            )
            return
        mine = "" if owner is None else " AND claimed_by = ?"
        c.exec_driver_sql(
            f"UPDATE deliveries SET status = '{submitted}', provider_id = ?, submitted_at = ?, "
            f"updated_at = ?, {rest} WHERE id = ? AND status = '{sending}'{mine}",
            [
                (d["b_provider_id"], at, at, d["b_id"]) + (() if owner is None else (owner,))
                for d in done
            ],
        )

    def mark_skipped(self, delivery_ids: Iterable[int], reason: str, *, now: datetime) -> None:
        ids = list(delivery_ids)
        with self.engine.begin() as c:
            c.execute(
                sa.update(t.deliveries)
                .where(t.deliveries.c.id.in_(ids))
                .values(status=DeliveryStatus.SKIPPED.value, error=reason, updated_at=now)
            )

    def forget_journal(self, edition_id: str) -> int:
        """Delete what is left of the edition's crash record in ``send_journal`` (answers an
        owner journaled but did not forget, say because it died after recording them); returns
        how many rows went. Only once nothing of the edition is ``sending``: a row in hand may
        still need its journal, so this does nothing (0) while any is."""
        d, j = t.deliveries.c, t.send_journal.c
        sending = sa.exists().where(
            d.edition_id == edition_id, d.status == DeliveryStatus.SENDING.value
        )
        with self.engine.begin() as c:
            if c.execute(sa.select(sending)).scalar():
                return 0
            res = c.execute(
                sa.delete(t.send_journal).where(
                    j.delivery_id.in_(sa.select(d.id).where(d.edition_id == edition_id))
                )
            )
        return res.rowcount or 0

    def delivery_counts(self, edition_id: str) -> dict[str, int]:
        """Rows per status, plus ``transient``, ``permanent`` and ``exhausted`` splitting the
        failed ones."""
        q = (
            sa.select(t.deliveries.c.status, t.deliveries.c.failure, sa.func.count())
            .where(t.deliveries.c.edition_id == edition_id)
            .group_by(t.deliveries.c.status, t.deliveries.c.failure)
        )
        counts = {s.value: 0 for s in DeliveryStatus} | {k: 0 for k in FAILURES}
        with self.engine.connect() as c:
            for status, failure, n in c.execute(q):
                counts[status] += int(n)
                if status == DeliveryStatus.FAILED.value and failure in counts:
                    counts[failure] += int(n)
        return counts
