"""Database access for every stage: one class, plain methods, short transactions.

Rows hold the whole normalised object as JSON (``body``) beside the columns that queries need,
so the pure stages work with models and never with rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.engine import Engine

from digest.errors import PermanentError, TransientError
from digest.models import (
    Article,
    DeliveryStatus,
    Edition,
    EditionStatus,
    NewSubscriber,
    SendResult,
    SendStatus,
    Subscriber,
    SubscriberStatus,
)
from digest.store import schema as t

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class SourceState:
    key: str
    url: str
    etag: str | None = None
    last_modified: str | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    consecutive_failures: int = 0


@dataclass(frozen=True)
class ImportCounts:
    added: int
    updated: int
    kept_unsubscribed: int


@dataclass(frozen=True)
class Claimed:
    """A ledger row claimed for sending, with the subscriber it is for."""

    delivery_id: int
    subscriber: Subscriber


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets a reader (the UI, a preview) work while a run writes; FKs are off by default.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


class Store:
    """The project's database. ``Store.open(url)`` connects and migrates to the newest schema."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Store:
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        try:
            engine = sa.create_engine(url)
        except (sa.exc.ArgumentError, ImportError) as e:
            raise PermanentError(f"store: cannot use database URL {url!r}: {e}") from e
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        store = cls(engine)
        if migrate:
            store.migrate()
        return store

    def migrate(self) -> None:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except sa.exc.OperationalError as e:
            raise TransientError(f"store: cannot reach the database: {e.orig}") from e

    def close(self) -> None:
        self.engine.dispose()

    # Sources ----------------------------------------------------------------------------------
    def source_state(self, key: str) -> SourceState | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(t.sources).where(t.sources.c.key == key)).first()
        if row is None:
            return None
        return SourceState(
            key=row.key,
            url=row.url,
            etag=row.etag,
            last_modified=row.last_modified,
            last_success_at=row.last_success_at,
            last_error=row.last_error,
            consecutive_failures=row.consecutive_failures,
        )

    def _upsert_source(self, c: sa.Connection, key: str, url: str, values: dict[str, Any]) -> None:
        if c.execute(sa.select(t.sources.c.key).where(t.sources.c.key == key)).first():
            c.execute(sa.update(t.sources).where(t.sources.c.key == key).values(url=url, **values))
        else:
            c.execute(sa.insert(t.sources).values(key=key, url=url, **values))

    def record_fetch_success(
        self,
        key: str,
        url: str,
        *,
        etag: str | None,
        last_modified: str | None,
        now: datetime,
    ) -> None:
        """Keep the validators for the next conditional GET and clear the failure streak."""
        with self.engine.begin() as c:
            self._upsert_source(
                c,
                key,
                url,
                {
                    "etag": etag,
                    "last_modified": last_modified,
                    "last_fetched_at": now,
                    "last_success_at": now,
                    "last_error": None,
                    "consecutive_failures": 0,
                },
            )

    def record_fetch_failure(self, key: str, url: str, *, error: str, now: datetime) -> int:
        """Record a failed fetch; returns the number of failures in a row."""
        with self.engine.begin() as c:
            row = c.execute(
                sa.select(t.sources.c.consecutive_failures).where(t.sources.c.key == key)
            ).first()
            failures = (row[0] if row else 0) + 1
            self._upsert_source(
                c,
                key,
                url,
                {
                    "last_fetched_at": now,
                    "last_error": error,
                    "last_error_at": now,
                    "consecutive_failures": failures,
                },
            )
        return failures

    # Articles ---------------------------------------------------------------------------------
    def save_articles(self, articles: Iterable[Article], *, now: datetime) -> set[str]:
        """Insert new articles, refresh known ones; returns the ids that were new."""
        new: set[str] = set()
        with self.engine.begin() as c:
            for a in articles:
                body = a.model_dump(mode="json")
                existing = c.execute(
                    sa.select(t.articles.c.id).where(t.articles.c.id == a.id)
                ).first()
                cols = {
                    "url": a.url,
                    "guid": a.guid,
                    "title": a.title,
                    "published_at": a.published,
                    "updated_at": a.updated,
                    "body": body,
                }
                if existing is None:
                    c.execute(
                        sa.insert(t.articles).values(
                            id=a.id, source=a.source, first_seen_at=now, **cols
                        )
                    )
                    new.add(a.id)
                else:
                    # The first source keeps ownership; the content follows the latest fetch.
                    cols["body"] = {
                        **body,
                        "source": c.execute(
                            sa.select(t.articles.c.source).where(t.articles.c.id == a.id)
                        ).scalar_one(),
                    }
                    c.execute(sa.update(t.articles).where(t.articles.c.id == a.id).values(**cols))
                linked = c.execute(
                    sa.select(t.article_sources.c.source).where(
                        t.article_sources.c.article_id == a.id,
                        t.article_sources.c.source == a.source,
                    )
                ).first()
                if linked is None:
                    c.execute(sa.insert(t.article_sources).values(article_id=a.id, source=a.source))
        return new

    def articles_from_sources(
        self, source_keys: Iterable[str], *, since: datetime | None = None
    ) -> list[tuple[Article, frozenset[str]]]:
        """Articles carried by any of ``source_keys``, with every source that carried each."""
        keys = list(source_keys)
        q = (
            sa.select(t.articles.c.body, t.article_sources.c.source)
            .join(t.article_sources, t.article_sources.c.article_id == t.articles.c.id)
            .where(t.article_sources.c.source.in_(keys))
            .order_by(t.articles.c.published_at.desc(), t.articles.c.id)
        )
        if since is not None:
            q = q.where(t.articles.c.published_at >= since)
        found: dict[str, tuple[Article, set[str]]] = {}
        with self.engine.connect() as c:
            for body, source in c.execute(q):
                if body["id"] not in found:
                    found[body["id"]] = (Article.model_validate(body), set())
                found[body["id"]][1].add(source)
        return [(a, frozenset(s)) for a, s in found.values()]

    def count_articles(self) -> int:
        with self.engine.connect() as c:
            return int(c.execute(sa.select(sa.func.count()).select_from(t.articles)).scalar_one())

    # Editions ---------------------------------------------------------------------------------
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

    def carried_article_ids(self, digest: str, *, except_edition: str | None = None) -> set[str]:
        """Articles that editions of ``digest`` carried (rejected editions carried nothing)."""
        q = (
            sa.select(t.edition_items.c.article_id)
            .join(t.editions, t.editions.c.id == t.edition_items.c.edition_id)
            .where(t.editions.c.digest == digest)
            .where(t.editions.c.status != EditionStatus.REJECTED.value)
        )
        if except_edition is not None:
            q = q.where(t.editions.c.id != except_edition)
        with self.engine.connect() as c:
            return {r[0] for r in c.execute(q)}

    def last_edition_time(self, digest: str) -> datetime | None:
        with self.engine.connect() as c:
            return c.execute(
                sa.select(sa.func.max(t.editions.c.created_at)).where(t.editions.c.digest == digest)
            ).scalar_one()

    def save_edition(self, edition: Edition, *, now: datetime) -> None:
        """Insert a new edition or replace a draft's content (never a sent one's)."""
        body = edition.model_dump(mode="json", exclude={"status"})
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
                        overrides={},
                        body=body,
                    )
                )
            elif row.status == EditionStatus.DRAFT.value:
                c.execute(
                    sa.update(t.editions)
                    .where(t.editions.c.id == edition.id)
                    .values(subject=edition.subject, updated_at=now, body=body)
                )
                c.execute(
                    sa.delete(t.edition_items).where(t.edition_items.c.edition_id == edition.id)
                )
            else:
                raise PermanentError(
                    f"edition {edition.id}: is {row.status}; only a draft can be changed"
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

    def set_edition_status(self, edition_id: str, status: EditionStatus, *, now: datetime) -> None:
        values: dict[str, Any] = {"status": status.value, "updated_at": now}
        if status is EditionStatus.APPROVED:
            values["approved_at"] = now
        if status is EditionStatus.SENT:
            values["sent_at"] = now
        with self.engine.begin() as c:
            c.execute(sa.update(t.editions).where(t.editions.c.id == edition_id).values(**values))

    # Subscribers ------------------------------------------------------------------------------
    @staticmethod
    def _subscriber(row: Any) -> Subscriber:
        return Subscriber(
            id=row.id,
            email=row.email,
            name=row.name,
            sections=None if row.sections is None else frozenset(row.sections),
            status=SubscriberStatus(row.status),
        )

    def import_subscribers(self, people: Sequence[NewSubscriber], *, now: datetime) -> ImportCounts:
        """Add or update subscribers by address. An unsubscribed or suppressed address stays so:
        an import never re-subscribes anyone."""
        added = updated = kept = 0
        with self.engine.begin() as c:
            for p in people:
                email = p.email.strip()
                row = c.execute(
                    sa.select(t.subscribers).where(
                        sa.func.lower(t.subscribers.c.email) == email.lower()
                    )
                ).first()
                sections = None if p.sections is None else sorted(p.sections)
                if row is None:
                    c.execute(
                        sa.insert(t.subscribers).values(
                            email=email,
                            name=p.name,
                            status=SubscriberStatus.ACTIVE.value,
                            sections=sections,
                            created_at=now,
                            updated_at=now,
                        )
                    )
                    added += 1
                elif row.status != SubscriberStatus.ACTIVE.value:
                    kept += 1
                elif row.name != p.name or row.sections != sections:
                    c.execute(
                        sa.update(t.subscribers)
                        .where(t.subscribers.c.id == row.id)
                        .values(name=p.name, sections=sections, updated_at=now)
                    )
                    updated += 1
        return ImportCounts(added=added, updated=updated, kept_unsubscribed=kept)

    def active_subscribers(self) -> list[Subscriber]:
        q = (
            sa.select(t.subscribers)
            .where(t.subscribers.c.status == SubscriberStatus.ACTIVE.value)
            .order_by(t.subscribers.c.id)
        )
        with self.engine.connect() as c:
            return [self._subscriber(r) for r in c.execute(q)]

    def set_subscriber_status(
        self, subscriber_id: int, status: SubscriberStatus, *, now: datetime
    ) -> None:
        with self.engine.begin() as c:
            c.execute(
                sa.update(t.subscribers)
                .where(t.subscribers.c.id == subscriber_id)
                .values(status=status.value, updated_at=now)
            )

    # Deliveries (the ledger) -------------------------------------------------------------------
    def create_deliveries(
        self, edition_id: str, subscriber_ids: Iterable[int], *, now: datetime
    ) -> int:
        """One pending row per (edition, subscriber) not yet in the ledger; returns how many."""
        with self.engine.begin() as c:
            have = {
                r[0]
                for r in c.execute(
                    sa.select(t.deliveries.c.subscriber_id).where(
                        t.deliveries.c.edition_id == edition_id
                    )
                )
            }
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
                if sid not in have
            ]
            if rows:
                c.execute(sa.insert(t.deliveries), rows)
        return len(rows)

    def release_stale(self, edition_id: str, *, now: datetime) -> int:
        """Rows a crashed run left in ``sending`` go back to pending (see README, re-runs)."""
        with self.engine.begin() as c:
            res = c.execute(
                sa.update(t.deliveries)
                .where(t.deliveries.c.edition_id == edition_id)
                .where(t.deliveries.c.status == DeliveryStatus.SENDING.value)
                .values(status=DeliveryStatus.PENDING.value, updated_at=now)
            )
        return res.rowcount or 0

    def claim_batch(self, edition_id: str, limit: int, *, now: datetime) -> list[Claimed]:
        """Move up to ``limit`` pending rows (and transient failures) to ``sending``."""
        with self.engine.begin() as c:
            q = (
                sa.select(t.deliveries.c.id, t.subscribers)
                .join(t.subscribers, t.subscribers.c.id == t.deliveries.c.subscriber_id)
                .where(t.deliveries.c.edition_id == edition_id)
                .where(t.deliveries.c.status == DeliveryStatus.PENDING.value)
                .order_by(t.deliveries.c.id)
                .limit(limit)
            )
            if c.dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True, of=t.deliveries)
            rows = c.execute(q).all()
            if not rows:
                return []
            ids = [r[0] for r in rows]
            c.execute(
                sa.update(t.deliveries)
                .where(t.deliveries.c.id.in_(ids))
                .where(t.deliveries.c.status == DeliveryStatus.PENDING.value)
                .values(
                    status=DeliveryStatus.SENDING.value,
                    attempts=t.deliveries.c.attempts + 1,
                    updated_at=now,
                )
            )
        return [Claimed(delivery_id=r[0], subscriber=self._subscriber(r)) for r in rows]

    def mark_results(self, results: Mapping[int, SendResult], *, now: datetime) -> None:
        """Record a provider's answers: submitted, or failed with the reason."""
        with self.engine.begin() as c:
            for delivery_id, res in results.items():
                if res.status is SendStatus.SUBMITTED:
                    values: dict[str, Any] = {
                        "status": DeliveryStatus.SUBMITTED.value,
                        "provider_id": res.provider_id,
                        "submitted_at": now,
                        "error": None,
                    }
                else:
                    values = {
                        "status": DeliveryStatus.FAILED.value,
                        "error": f"{res.status.value}: {res.reason}",
                    }
                c.execute(
                    sa.update(t.deliveries)
                    .where(t.deliveries.c.id == delivery_id)
                    .values(updated_at=now, **values)
                )

    def retry_failed(self, edition_id: str, *, now: datetime) -> int:
        """Put transient failures back in the queue (an operator's re-run)."""
        with self.engine.begin() as c:
            res = c.execute(
                sa.update(t.deliveries)
                .where(t.deliveries.c.edition_id == edition_id)
                .where(t.deliveries.c.status == DeliveryStatus.FAILED.value)
                .where(t.deliveries.c.error.like("transient:%"))
                .values(status=DeliveryStatus.PENDING.value, updated_at=now)
            )
        return res.rowcount or 0

    def delivery_counts(self, edition_id: str) -> dict[str, int]:
        q = (
            sa.select(t.deliveries.c.status, sa.func.count())
            .where(t.deliveries.c.edition_id == edition_id)
            .group_by(t.deliveries.c.status)
        )
        with self.engine.connect() as c:
            counts = {s.value: 0 for s in DeliveryStatus}
            counts.update({status: int(n) for status, n in c.execute(q)})
        return counts

    def submitted_subscriber_ids(self, edition_id: str) -> set[int]:
        q = sa.select(t.deliveries.c.subscriber_id).where(
            t.deliveries.c.edition_id == edition_id,
            t.deliveries.c.status == DeliveryStatus.SUBMITTED.value,
        )
        with self.engine.connect() as c:
            return {r[0] for r in c.execute(q)}
