"""Editions in the store: drafts saved and replaced, their status, the editor's overrides, and
which articles editions already carried."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from digest.errors import PermanentError
from digest.models import Edition, EditionStatus, Overrides
from digest.store import schema as t
from digest.store.base import StoreBase

# Editions whose articles count as carried: a draft nobody approved, or a rejected one, did not
# carry anything and must not hide its articles from later editions.
CARRYING = (EditionStatus.APPROVED.value, EditionStatus.SENDING.value, EditionStatus.SENT.value)


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

    def last_editions(self, limit: int) -> list[dict[str, Any]]:
        """The newest editions of every digest, newest first: id, digest, period, status,
        created_at, sent_at."""
        e = t.editions.c
        q = (
            sa.select(e.id, e.digest, e.period, e.status, e.created_at, e.sent_at)
            .order_by(e.created_at.desc(), e.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]

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
        self, edition: Edition, *, now: datetime, overrides: Overrides | None = None
    ) -> None:
        """Insert a new edition or replace a draft's content (never a sent one's).

        With ``overrides`` (an editor's edit) an approved or rejected edition is replaced too
        and goes back to draft, overrides and content together in one transaction.
        """
        body = edition.model_dump(mode="json", exclude={"status"})
        editable = {EditionStatus.DRAFT.value}
        if overrides is not None:
            editable |= {EditionStatus.APPROVED.value, EditionStatus.REJECTED.value}
        with self.engine.begin() as c:
            row = c.execute(
                sa.select(t.editions.c.status).where(t.editions.c.id == edition.id)
            ).first()
            if row is None:
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
            elif row.status in editable:
                values: dict[str, Any] = {
                    "subject": edition.subject,
                    "updated_at": now,
                    "body": body,
                }
                if overrides is not None:
                    values |= {
                        "overrides": overrides.model_dump(mode="json"),
                        "status": EditionStatus.DRAFT.value,
                        "approved_at": None,
                    }
                c.execute(
                    sa.update(t.editions).where(t.editions.c.id == edition.id).values(**values)
                )
                c.execute(
                    sa.delete(t.edition_items).where(t.edition_items.c.edition_id == edition.id)
                )
            else:
                raise PermanentError(
                    f"edition {edition.id}: is {row.status}; it can no longer be changed"
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

    def overrides(self, edition_id: str) -> Overrides:
        with self.engine.connect() as c:
            raw = c.execute(
                sa.select(t.editions.c.overrides).where(t.editions.c.id == edition_id)
            ).scalar_one_or_none()
        return Overrides.model_validate(raw or {})

    def set_edition_status(self, edition_id: str, status: EditionStatus, *, now: datetime) -> None:
        values: dict[str, Any] = {"status": status.value, "updated_at": now}
        if status is EditionStatus.APPROVED:
            values["approved_at"] = now
        if status is EditionStatus.SENT:
            values["sent_at"] = now
        with self.engine.begin() as c:
            c.execute(sa.update(t.editions).where(t.editions.c.id == edition_id).values(**values))
