"""Clicks in the store: counts per edition and article, the day's visitor hashes that make a
repeated click count once, and which editions already have their click summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from digest.store import schema as t
from digest.store.base import StoreBase, _insert_ignore, _insert_ignore_keys


@dataclass(frozen=True, slots=True)
class ClickCount:
    article_id: str
    section: str
    clicks: int
    filtered: int


@dataclass(frozen=True, slots=True)
class ClickRow:
    """One click to record: whether it counts as a reader's, and the visitor's hash."""

    edition_id: str
    article_id: str
    section: str
    counted: bool
    visitor: str
    day: str


class ClickStore(StoreBase):
    """The ``clicks``, ``click_visitors`` and ``click_summaries`` tables."""

    def record_clicks(self, clicks: list[ClickRow], *, forget_before: str = "") -> int:
        """Record a batch of clicks in one transaction; returns how many counted as readers'.
        A row not ``counted`` is a scanner's (``filtered`` goes up); a counted one counts
        unless its ``visitor`` (a hash, see the schema) already clicked the link that ``day``.
        Concurrent writers never lose a count (``UPDATE … SET clicks = clicks + 1``).
        ``forget_before``: visitor hashes of days before it are deleted first."""
        c_ = t.clicks.c
        links = {(r.edition_id, r.article_id): r.section for r in clicks}
        with self.engine.begin() as c:
            if forget_before:
                c.execute(sa.delete(t.click_visitors).where(t.click_visitors.c.day < forget_before))
            _insert_ignore(
                c,
                t.clicks,
                [{"edition_id": e, "article_id": a, "section": s} for (e, a), s in links.items()],
                ["edition_id", "article_id"],
            )
            # Each visitor hash names one link: the ones that went in are the first clicks.
            counted = {
                (r.day, r.visitor): (r.edition_id, r.article_id) for r in clicks if r.counted
            }
            new = _insert_ignore_keys(
                c,
                t.click_visitors,
                [{"day": day, "visitor": visitor} for day, visitor in counted],
                ["day", "visitor"],
                returning="visitor",
            )
            by_visitor = {visitor: link for (_, visitor), link in counted.items()}
            first = Counter(by_visitor[v] for v in new)
            filtered = Counter((r.edition_id, r.article_id) for r in clicks if not r.counted)
            for link in links:
                if first[link] or filtered[link]:
                    c.execute(
                        sa.update(t.clicks)
                        .where(c_.edition_id == link[0], c_.article_id == link[1])
                        .values(
                            clicks=c_.clicks + first[link], filtered=c_.filtered + filtered[link]
                        )
                    )
        return sum(first.values())

    def click_counts(self, edition_id: str) -> list[ClickCount]:
        """The edition's clicked articles, most clicks first."""
        c_ = t.clicks.c
        q = (
            sa.select(c_.article_id, c_.section, c_.clicks, c_.filtered)
            .where(c_.edition_id == edition_id)
            .order_by(c_.clicks.desc(), c_.article_id)
        )
        with self.engine.connect() as c:
            return [ClickCount(*row) for row in c.execute(q)]

    def sent_at(self, edition_id: str) -> datetime | None:
        """When the edition finished sending (None: not sent, or no such edition)."""
        e = t.editions.c
        with self.engine.connect() as c:
            return c.execute(sa.select(e.sent_at).where(e.id == edition_id)).scalar_one_or_none()

    def editions_without_click_summary(self, sent_before: datetime) -> list[str]:
        """Sent editions, sent at or before ``sent_before``, whose click summary is not made."""
        e = t.editions.c
        q = (
            sa.select(e.id)
            .where(
                e.status == "sent",
                e.sent_at <= sent_before,
                e.id.not_in(sa.select(t.click_summaries.c.edition_id)),
            )
            .order_by(e.sent_at, e.id)
        )
        with self.engine.connect() as c:
            return list(c.execute(q).scalars())

    def mark_click_summary(self, edition_id: str, now: datetime) -> bool:
        """Note that the edition's click summary is made; False when it already was."""
        with self.engine.begin() as c:
            return bool(
                _insert_ignore(
                    c,
                    t.click_summaries,
                    [{"edition_id": edition_id, "created_at": now}],
                    ["edition_id"],
                )
            )
