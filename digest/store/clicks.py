"""Clicks in the store: counts per edition and article, the day's visitor hashes that make a
repeated click count once, which editions already have their click summary, and (with
per-subscriber analytics only) which subscriber clicked which article."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from digest.models import LEAVABLE
from digest.store import schema as t
from digest.store.base import StoreBase, _insert_ignore, _insert_ignore_keys


@dataclass(frozen=True, slots=True)
class ClickCount:
    article_id: str
    section: str
    clicks: int
    filtered: int
    clickers: int = 0


@dataclass(frozen=True, slots=True)
class ClickRow:
    """One click to record: whether it counts as a reader's, and the visitor's hash."""

    edition_id: str
    article_id: str
    section: str
    counted: bool
    visitor: str
    day: str
    # With per-subscriber analytics: the subscriber the link names (0: nobody), and when.
    subscriber_id: int = 0
    at: datetime | None = None


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
            clickers = self._record_clickers(c, clicks)
            for link in links:
                if first[link] or filtered[link] or clickers[link]:
                    c.execute(
                        sa.update(t.clicks)
                        .where(c_.edition_id == link[0], c_.article_id == link[1])
                        .values(
                            clicks=c_.clicks + first[link],
                            filtered=c_.filtered + filtered[link],
                            clickers=c_.clickers + clickers[link],
                        )
                    )
        return sum(first.values())

    @staticmethod
    def _record_clickers(c: sa.Connection, clicks: list[ClickRow]) -> Counter[tuple[str, str]]:
        """Note each counted click that names a subscriber still subscribed (a click that came
        after they left is not kept); the new clickers per link. The subscribers' rows are read
        FOR SHARE, so a concurrent unsubscribe (which deletes their clicks) waits for this
        transaction and then deletes what it wrote."""
        first: dict[tuple[str, str, int], datetime] = {}
        for r in clicks:
            if r.counted and r.subscriber_id > 0 and r.at is not None:
                first.setdefault((r.edition_id, r.article_id, r.subscriber_id), r.at)
        if not first:
            return Counter()
        s_ = t.subscribers.c
        q = (
            sa.select(s_.id)
            .where(
                s_.id.in_(sorted({sid for _, _, sid in first})),
                s_.status.in_([s.value for s in LEAVABLE]),
            )
            .with_for_update(read=True)
        )
        present = set(c.execute(q).scalars())
        new = _insert_ignore_keys(
            c,
            t.subscriber_clicks,
            [
                {"edition_id": e, "article_id": a, "subscriber_id": sid, "first_at": at}
                for (e, a, sid), at in first.items()
                if sid in present
            ],
            ["edition_id", "article_id", "subscriber_id"],
            returning=("edition_id", "article_id"),
        )
        return Counter(new)

    def subscriber_clicks(self, subscriber_id: int) -> list[tuple[str, str, datetime]]:
        """``(edition id, article id, first click)`` of each link the subscriber clicked, kept
        only with per-subscriber analytics on, oldest first."""
        sc = t.subscriber_clicks.c
        q = (
            sa.select(sc.edition_id, sc.article_id, sc.first_at)
            .where(sc.subscriber_id == subscriber_id)
            .order_by(sc.first_at, sc.edition_id, sc.article_id)
        )
        with self.engine.connect() as c:
            return [(e, a, at) for e, a, at in c.execute(q)]

    def click_counts(self, edition_id: str) -> list[ClickCount]:
        """The edition's clicked articles, most clicks first."""
        c_ = t.clicks.c
        q = (
            sa.select(c_.article_id, c_.section, c_.clicks, c_.filtered, c_.clickers)
            .where(c_.edition_id == edition_id)
            .order_by(c_.clicks.desc(), c_.article_id)
        )
        with self.engine.connect() as c:
            return [ClickCount(*row) for row in c.execute(q)]

    def click_edition(self, edition_id: str) -> tuple[str, datetime | None] | None:
        """The edition's digest and when it finished sending (None: not sent), or None when
        there is no such edition."""
        e = t.editions.c
        with self.engine.connect() as c:
            row = c.execute(sa.select(e.digest, e.sent_at).where(e.id == edition_id)).first()
        return None if row is None else (row[0], row[1])

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
