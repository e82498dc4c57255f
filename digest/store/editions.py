"""Editions in the store: drafts saved and replaced, their status (every change a compare-and-set
allowed by ``digest.models.EDITION_TRANSITIONS``), the editor's overrides, and which articles
editions already carried."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from digest.errors import EditionStateError
from digest.models import EDITION_TRANSITIONS, Edition, EditionAction, EditionStatus, Overrides
from digest.store import schema as t
from digest.store.base import StoreBase

# Editions whose articles count as carried: a draft nobody approved, or a rejected one, did not
# carry anything and must not hide its articles from later editions.
CARRYING = (EditionStatus.APPROVED.value, EditionStatus.SENDING.value, EditionStatus.SENT.value)
# Statuses in which nobody approved the edition (yet): ``approved_at`` is cleared.
UNDECIDED = frozenset({EditionStatus.DRAFT, EditionStatus.AWAITING_APPROVAL})


@dataclass(frozen=True, slots=True)
class SentEdition:
    """An edition that went out, with when it did (``sent_at``: the first time its sending
    finished) and when it was made (``created_at``, which never changes)."""

    edition: Edition
    sent_at: datetime
    created_at: datetime


def _went_out(digests: Collection[str]) -> sa.ColumnElement[bool]:
    """Editions of ``digests`` that went out: sent, or sending again after they were (messages
    out of attempts queued again); never one whose first sending has not finished."""
    e = t.editions.c
    return sa.and_(
        e.digest.in_(sorted(digests)),
        sa.or_(
            e.status == EditionStatus.SENT.value,
            sa.and_(e.status == EditionStatus.SENDING.value, e.sent_at.is_not(None)),
        ),
    )


class EditionStore(StoreBase):
    """The ``editions`` table and their articles in order (``edition_items``)."""

    def edition(self, edition_id: str) -> Edition | None:
        with self.engine.connect() as c:
            row = c.execute(
                sa.select(t.editions.c.body, t.editions.c.status).where(
                    t.editions.c.id == edition_id
                )
            ).first()
        if row is None:
            return None
        return Edition.model_validate({**row.body, "status": row.status})

    def last_editions(self, limit: int, *, digest: str | None = None) -> list[dict[str, Any]]:
        """The newest editions of every digest (or of ``digest``), newest first: id, digest,
        period, status, created_at, sent_at."""
        e = t.editions.c
        q = (
            sa.select(e.id, e.digest, e.period, e.status, e.created_at, e.sent_at)
            .order_by(e.created_at.desc(), e.id.desc())
            .limit(limit)
        )
        if digest is not None:
            q = q.where(e.digest == digest)
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    def sent_editions(
        self, digests: Collection[str], *, limit: int, offset: int = 0
    ) -> list[SentEdition]:
        """The editions of ``digests`` that went out, newest first (by when they were sent)."""
        e = t.editions.c
        sent = sa.func.coalesce(e.sent_at, e.updated_at)
        q = (
            sa.select(e.body, e.status, sent.label("sent_at"), e.created_at)
            .where(_went_out(digests))
            .order_by(sent.desc(), e.id.desc())
            .limit(limit)
            .offset(offset)
        )
        with self.engine.connect() as c:
            return [
                SentEdition(
                    edition=Edition.model_validate({**r.body, "status": r.status}),
                    sent_at=r.sent_at,
                    created_at=r.created_at,
                )
                for r in c.execute(q)
            ]

    def count_sent_editions(self, digests: Collection[str]) -> int:
        """How many editions of ``digests`` went out (see :meth:`sent_editions`)."""
        q = sa.select(sa.func.count()).select_from(t.editions).where(_went_out(digests))
        with self.engine.connect() as c:
            return int(c.execute(q).scalar_one())

    def carried_article_ids(self, digest: str, *, except_edition: str | None = None) -> set[str]:
        """Articles that approved or sent editions of ``digest`` carried."""
        q = (
            sa.select(t.edition_items.c.article_id)
            .join(t.editions, t.editions.c.id == t.edition_items.c.edition_id)
            .where(t.editions.c.digest == digest)
            .where(t.editions.c.status.in_(CARRYING))
        )
        if except_edition is not None:
            q = q.where(t.editions.c.id != except_edition)
        with self.engine.connect() as c:
            return {r[0] for r in c.execute(q)}

    def last_edition_time(self, digest: str) -> datetime | None:
        with self.engine.connect() as c:
            return c.execute(
                sa.select(sa.func.max(t.editions.c.created_at))
                .where(t.editions.c.digest == digest)
                .where(t.editions.c.status.in_(CARRYING))
            ).scalar_one()

    def save_edition(
        self,
        edition: Edition,
        *,
        now: datetime,
        overrides: Overrides | None = None,
        expected: EditionStatus | None = None,
    ) -> EditionStatus:
        """Insert a new edition, or replace an existing one's content: a draft's as it is
        recomposed (``RECOMPOSE``), or, with ``overrides`` (an editor's edit, ``EDIT``), a
        draft's, an approved or skipped one's (which goes back to draft) or one awaiting
        approval (which still awaits it), overrides and content together in one transaction.
        The replacement is a compare-and-set on the status (see :meth:`change_edition_status`):
        raises :class:`EditionStateError` when the status does not allow it (never a rejected,
        sending or sent edition) or is no longer ``expected``.
        Returns the status the edition has after it.
        """
        body = edition.model_dump(mode="json", exclude={"status"})
        action = EditionAction.RECOMPOSE if overrides is None else EditionAction.EDIT
        status = edition.status
        with self.engine.begin() as c:
            exists = c.execute(
                sa.select(t.editions.c.id).where(t.editions.c.id == edition.id)
            ).first()
            if exists is None:
                c.execute(
                    sa.insert(t.editions).values(
                        id=edition.id,
                        digest=edition.digest,
                        period=edition.period,
                        status=edition.status.value,
                        subject=edition.subject,
                        created_at=edition.created_at,
                        updated_at=now,
                        overrides=(overrides or Overrides()).model_dump(mode="json"),
                        body=body,
                    )
                )
            else:
                values: dict[str, Any] = {"subject": edition.subject, "body": body}
                if overrides is not None:
                    values["overrides"] = overrides.model_dump(mode="json")
                status = _compare_and_set(
                    c, edition.id, action, now=now, expected=expected, values=values
                )
                c.execute(
                    sa.delete(t.edition_items).where(t.edition_items.c.edition_id == edition.id)
                )
            c.execute(
                sa.insert(t.edition_items),
                [
                    {
                        "edition_id": edition.id,
                        "article_id": teaser.article_id,
                        "section": teaser.section,
                        "position": i,
                    }
                    for i, teaser in enumerate(edition.teasers)
                ],
            )
        return status

    def overrides(self, edition_id: str) -> Overrides:
        with self.engine.connect() as c:
            raw = c.execute(
                sa.select(t.editions.c.overrides).where(t.editions.c.id == edition_id)
            ).scalar_one_or_none()
        return Overrides.model_validate(raw or {})

    def edition_status(self, edition_id: str) -> EditionStatus | None:
        with self.engine.connect() as c:
            raw = c.execute(
                sa.select(t.editions.c.status).where(t.editions.c.id == edition_id)
            ).scalar_one_or_none()
        return None if raw is None else EditionStatus(raw)

    def change_edition_status(
        self,
        edition_id: str,
        action: EditionAction,
        *,
        now: datetime,
        expected: EditionStatus | None = None,
    ) -> EditionStatus:
        """Apply ``action`` to the edition: one compare-and-set of its status, allowed only
        from the statuses ``EDITION_TRANSITIONS`` lists for it, and only from ``expected``
        when given (the status the caller saw: of two decisions on what both saw, one wins).
        Returns the new status; raises :class:`EditionStateError`, naming the edition, its
        status now and the action refused, when the action is not allowed or lost the race.
        """
        with self.engine.begin() as c:
            return _compare_and_set(c, edition_id, action, now=now, expected=expected)


def _compare_and_set(
    c: sa.Connection,
    edition_id: str,
    action: EditionAction,
    *,
    now: datetime,
    expected: EditionStatus | None,
    values: dict[str, Any] | None = None,
) -> EditionStatus:
    """``UPDATE editions SET status = <to> … WHERE id = :id AND status IN (<allowed>)``, in
    ``c``'s transaction; the new status, or :class:`EditionStateError` when no row matched."""
    rule = EDITION_TRANSITIONS[action]
    allowed = rule.allowed_from if expected is None else rule.allowed_from & {expected}
    moves = {old: new for old, new in rule.moves.items() if old in allowed}
    e = t.editions.c
    targets = set(moves.values())
    # One statement whatever the status it starts from: the status it leaves depends on it.
    to: Any = (
        next(iter(targets)).value
        if len(targets) == 1
        else sa.case({old.value: new.value for old, new in moves.items()}, value=e.status)
    )
    changes: dict[str, Any] = {**(values or {}), "status": to, "updated_at": now}
    if targets == {EditionStatus.APPROVED}:
        changes["approved_at"] = now
    elif targets and targets <= UNDECIDED:
        changes["approved_at"] = None
    elif targets == {EditionStatus.SENT}:
        # When it first went out: sending again (``REOPEN``) and finishing again keep it.
        changes["sent_at"] = sa.func.coalesce(e.sent_at, now)
    done = (
        c.execute(
            sa.update(t.editions)
            .where(e.id == edition_id, e.status.in_(sorted(s.value for s in moves)))
            .values(**changes)
        ).rowcount
        if moves
        else 0
    )
    if done == 1:
        if len(targets) == 1:
            return next(iter(targets))
        # This transaction holds the row it changed: what it reads is what it wrote.
        return EditionStatus(c.execute(sa.select(e.status).where(e.id == edition_id)).scalar_one())
    current = c.execute(sa.select(e.status).where(e.id == edition_id)).scalar_one_or_none()
    raise EditionStateError(
        edition_id,
        current or "",
        action.value,
        expected=expected.value if expected is not None else "",
        allowed=", ".join(sorted(s.value for s in rule.allowed_from)),
    )
