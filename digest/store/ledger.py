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

from digest.models import DeliveryStatus, SendResult, SendStatus, Subscriber, SubscriberStatus
from digest.store import schema as t
from digest.store.base import _insert_ignore
from digest.store.locks import claim_lock, stale
from digest.store.subscribers import SubscriberStore

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


class LedgerStore(SubscriberStore):
    """The ``deliveries`` table. It builds on the subscribers' part: a claim returns each row's
    subscriber, and a hard bounce suppresses one."""

    def create_deliveries(
        self, edition_id: str, subscriber_ids: Iterable[int], *, now: datetime
    ) -> int:
        """One pending row per (edition, subscriber) not yet in the ledger; returns how many."""
        rows = [
            {
                "edition_id": edition_id,
                "subscriber_id": sid,
                "status": DeliveryStatus.PENDING.value,
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
            for sid in dict.fromkeys(subscriber_ids)
        ]
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

    def release_stale(self, edition_id: str, *, now: datetime) -> int:
        """Every row of the edition in ``sending`` goes back to pending, whoever claimed it. Only
        for an operator's repair: owners settle each other's rows by :meth:`take_over`."""
        with self.engine.begin() as c:
            res = c.execute(
                sa.update(t.deliveries)
                .where(t.deliveries.c.edition_id == edition_id)
                .where(t.deliveries.c.status == DeliveryStatus.SENDING.value)
                .values(status=DeliveryStatus.PENDING.value, updated_at=now)
            )
        return res.rowcount or 0

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
        self, edition_id: str, limit: int, *, now: datetime, owner: str | None = None
    ) -> list[Claimed]:
        """Move up to ``limit`` pending rows of active subscribers to ``sending``, claimed by
        ``owner``.

        The UPDATE re-checks ``pending`` and returns the ids it changed, so a row is claimed by
        one caller only, even if two select the same candidates (on PostgreSQL, concurrent
        claimers skip each other's locked candidates instead of waiting).
        """
        with self.engine.begin() as c:
            q = (
                sa.select(t.deliveries.c.id)
                .join(t.subscribers, t.subscribers.c.id == t.deliveries.c.subscriber_id)
                .where(t.deliveries.c.edition_id == edition_id)
                .where(t.deliveries.c.status == DeliveryStatus.PENDING.value)
                .where(t.subscribers.c.status == SubscriberStatus.ACTIVE.value)
                .order_by(t.deliveries.c.id)
                .limit(limit)
            )
            if c.dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True, of=t.deliveries)
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
            rows = c.execute(
                sa.select(t.deliveries.c.id, t.deliveries.c.attempts, t.subscribers)
                .join(t.subscribers, t.subscribers.c.id == t.deliveries.c.subscriber_id)
                .where(t.deliveries.c.id.in_(claimed))
                .order_by(t.deliveries.c.id)
            ).all()
        return [
            Claimed(delivery_id=r[0], subscriber=self._subscriber(r), attempts=r[1]) for r in rows
        ]

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
                c.execute(
                    sa.update(t.deliveries)
                    .where(t.deliveries.c.id == sa.bindparam("b_id"), still_sending)
                    .values(
                        status=DeliveryStatus.SUBMITTED.value,
                        provider_id=sa.bindparam("b_provider_id"),
                        submitted_at=now,
                        failure=None,
                        error=None,
                        next_attempt_at=None,
                        updated_at=now,
                    ),
                    done,
                )
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

    def mark_skipped(self, delivery_ids: Iterable[int], reason: str, *, now: datetime) -> None:
        ids = list(delivery_ids)
        with self.engine.begin() as c:
            c.execute(
                sa.update(t.deliveries)
                .where(t.deliveries.c.id.in_(ids))
                .values(status=DeliveryStatus.SKIPPED.value, error=reason, updated_at=now)
            )

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

    def submitted_subscriber_ids(self, edition_id: str) -> set[int]:
        q = sa.select(t.deliveries.c.subscriber_id).where(
            t.deliveries.c.edition_id == edition_id,
            t.deliveries.c.status == DeliveryStatus.SUBMITTED.value,
        )
        with self.engine.connect() as c:
            return {r[0] for r in c.execute(q)}
