"""Database access for every stage: one class, plain methods, short transactions.

Rows hold the whole normalised object as JSON (``body``) beside the columns that queries need,
so the pure stages work with models and never with rows.
"""

from __future__ import annotations

import os
import secrets
import socket
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.engine import Engine

from digest.errors import DeliveryLocked, PermanentError, TransientError
from digest.models import (
    LEAVABLE,
    Article,
    DeliveryStatus,
    Edition,
    EditionStatus,
    NewSubscriber,
    Overrides,
    SendResult,
    SendStatus,
    Subscriber,
    SubscriberStatus,
)
from digest.store import schema as t

MIGRATIONS = Path(__file__).parent / "migrations"
# Editions whose articles count as carried: a draft nobody approved, or a rejected one, did not
# carry anything and must not hide its articles from later editions.
CARRYING = (EditionStatus.APPROVED.value, EditionStatus.SENDING.value, EditionStatus.SENT.value)


@dataclass(frozen=True)
class SourceState:
    key: str
    url: str
    etag: str | None = None
    last_modified: str | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    consecutive_failures: int = 0


@dataclass(frozen=True)
class ImportCounts:
    added: int
    updated: int
    kept_unsubscribed: int


# Kinds of failed ledger rows (deliveries.failure).
TRANSIENT, PERMANENT, EXHAUSTED = "transient", "permanent", "exhausted"
FAILURES = (TRANSIENT, PERMANENT, EXHAUSTED)


@dataclass(frozen=True)
class Claimed:
    """A ledger row claimed for sending, with the subscriber it is for."""

    delivery_id: int
    subscriber: Subscriber
    attempts: int = 1  # tries of this row so far, this one included


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets a reader (the UI, a preview) work while a run writes; FKs are off by default.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _insert_ignore(
    c: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], keys: list[str]
) -> int:
    """INSERT rows, skipping those whose ``keys`` already exist; returns how many went in.

    One statement, so two writers racing on the same key cannot make either fail.
    """
    return len(_insert_ignore_keys(c, table, rows, keys))


def _insert_ignore_keys(
    c: sa.Connection,
    table: sa.Table,
    rows: list[dict[str, Any]],
    keys: list[str],
    returning: str | None = None,
) -> list[Any]:
    """Like :func:`_insert_ignore`, returning the first key (or the ``returning`` column) of
    each row that went in."""
    if not rows:
        return []
    name = c.dialect.name
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
    else:
        raise PermanentError(f"store: database {name!r} is not supported (SQLite, PostgreSQL)")
    stmt = insert(table).on_conflict_do_nothing(index_elements=keys)
    # Count with RETURNING: drivers disagree on rowcount for many-row executes.
    result = c.execute(stmt.returning(table.c[returning or keys[0]]), rows)
    return [r[0] for r in result]


# Databases this process has brought to the newest schema: a run opens the store once per flow,
# and checking the migrations each time costs more than the work of a small flow.
_MIGRATED: set[str] = set()


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _keys(keys: frozenset[str] | None) -> list[str] | None:
    """Chosen keys as stored: a sorted JSON list, or NULL for "all"."""
    return None if keys is None else sorted(keys)


class _Seen(Exception):
    """An event id was recorded before: roll the transaction back."""


def email_key(email: str) -> str:
    """An address as the store compares it: addresses differing only in case are one."""
    return email.strip().casefold()


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def lock_owner() -> str:
    """A name for this process that other runs can show and, on this host, check for life."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


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
        if migrate and url not in _MIGRATED:
            store.migrate()
            _MIGRATED.add(url)
        return store

    def migrate(self) -> None:
        cfg = _alembic_config()
        try:
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except sa.exc.OperationalError as e:
            raise TransientError(f"store: cannot reach the database: {e.orig}") from e

    def close(self) -> None:
        self.engine.dispose()

    # Sources ----------------------------------------------------------------------------------
    def source_states(self) -> list[SourceState]:
        """Every source that was ever fetched, by key."""
        with self.engine.connect() as c:
            rows = c.execute(sa.select(t.sources).order_by(t.sources.c.key)).all()
        return [self._source_state(r) for r in rows]

    @staticmethod
    def _source_state(row: Any) -> SourceState:
        return SourceState(
            key=row.key,
            url=row.url,
            etag=row.etag,
            last_modified=row.last_modified,
            last_success_at=row.last_success_at,
            last_error=row.last_error,
            last_error_at=row.last_error_at,
            consecutive_failures=row.consecutive_failures,
        )

    def source_state(self, key: str) -> SourceState | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(t.sources).where(t.sources.c.key == key)).first()
        return None if row is None else self._source_state(row)

    def _upsert_source(self, c: sa.Connection, key: str, url: str, values: dict[str, Any]) -> None:
        _insert_ignore(c, t.sources, [{"key": key, "url": url}], ["key"])
        c.execute(sa.update(t.sources).where(t.sources.c.key == key).values(url=url, **values))

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
        """Insert new articles, refresh known ones; returns the ids that were new.

        A known article keeps its first source and its first publication time (feeds without
        dates would otherwise move it to "now" on every fetch); title and content follow the
        latest fetch. New rows go in as one statement; unchanged known rows are not rewritten.
        """
        batch = list({a.id: a for a in articles}.values())
        if not batch:
            return set()
        bodies = {a.id: a.model_dump(mode="json") for a in batch}
        rows = [
            {
                "id": a.id,
                "source": a.source,
                "url": a.url,
                "guid": a.guid,
                "title": a.title,
                "published_at": a.published,
                "updated_at": a.updated,
                "first_seen_at": now,
                "body": bodies[a.id],
            }
            for a in batch
        ]
        with self.engine.begin() as c:
            new = set(_insert_ignore_keys(c, t.articles, rows, ["id"]))
            known = {a.id: a for a in batch if a.id not in new}
            for chunk in _chunks(list(known), 500):
                kept = dict(
                    c.execute(
                        sa.select(t.articles.c.id, t.articles.c.body).where(
                            t.articles.c.id.in_(chunk)
                        )
                    ).all()
                )
                for article_id in chunk:
                    a, old = known[article_id], kept[article_id]
                    body = {**bodies[a.id], "source": old["source"], "published": old["published"]}
                    if body == old:
                        continue
                    c.execute(
                        sa.update(t.articles)
                        .where(t.articles.c.id == a.id)
                        .values(
                            url=a.url, guid=a.guid, title=a.title, updated_at=a.updated, body=body
                        )
                    )
            _insert_ignore(
                c,
                t.article_sources,
                [{"article_id": a.id, "source": a.source} for a in batch],
                ["article_id", "source"],
            )
        return new

    def articles_from_sources(
        self,
        source_keys: Iterable[str],
        *,
        since: datetime | None = None,
        also: Iterable[str] = (),
    ) -> list[tuple[Article, frozenset[str]]]:
        """Articles carried by any of ``source_keys``, with every source that carried each;
        with ``since``, only those published since then, plus the ids in ``also``."""
        keys = list(source_keys)
        q = (
            sa.select(t.articles.c.body, t.article_sources.c.source)
            .join(t.article_sources, t.article_sources.c.article_id == t.articles.c.id)
            .where(t.article_sources.c.source.in_(keys))
            .order_by(t.articles.c.published_at.desc(), t.articles.c.id)
        )
        if since is not None:
            q = q.where(sa.or_(t.articles.c.published_at >= since, t.articles.c.id.in_(list(also))))
        found: dict[str, tuple[Article, set[str]]] = {}
        with self.engine.connect() as c:
            for body, source in c.execute(q):
                if body["id"] not in found:
                    found[body["id"]] = (Article.model_validate(body), set())
                found[body["id"]][1].add(source)
        return [(a, frozenset(s)) for a, s in found.values()]

    def articles_by_id(self, ids: Iterable[str]) -> dict[str, Article]:
        wanted = list(ids)
        with self.engine.connect() as c:
            rows = c.execute(sa.select(t.articles.c.body).where(t.articles.c.id.in_(wanted)))
            return {r.body["id"]: Article.model_validate(r.body) for r in rows}

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

    # Subscribers ------------------------------------------------------------------------------
    @staticmethod
    def _subscriber(row: Any) -> Subscriber:
        return Subscriber(
            id=row.id,
            email=row.email,
            name=row.name,
            sections=None if row.sections is None else frozenset(row.sections),
            digests=None if row.digests is None else frozenset(row.digests),
            status=SubscriberStatus(row.status),
            source=row.source,
            token_id=row.token_id,
        )

    def import_subscribers(
        self, people: Sequence[NewSubscriber], *, now: datetime, source: str = "import"
    ) -> ImportCounts:
        """Add or update subscribers by address (an idempotent upsert). Anyone not active stays
        as they are: an import never re-subscribes an address that left, bounced, complained,
        paused or has not confirmed; only double opt-in does."""
        added = updated = kept = 0
        with self.engine.begin() as c:
            for p in people:
                email = p.email.strip()
                row = self._row_by_email(c, email)
                sections, digests = _keys(p.sections), _keys(p.digests)
                if row is None:
                    self._insert_subscriber(
                        c, p, SubscriberStatus.ACTIVE, source, now, f"added by {source}"
                    )
                    added += 1
                elif row.status != SubscriberStatus.ACTIVE.value:
                    kept += 1
                elif (row.name, row.sections, row.digests) != (p.name, sections, digests):
                    c.execute(
                        sa.update(t.subscribers)
                        .where(t.subscribers.c.id == row.id)
                        .values(name=p.name, sections=sections, digests=digests, updated_at=now)
                    )
                    updated += 1
        return ImportCounts(added=added, updated=updated, kept_unsubscribed=kept)

    @staticmethod
    def _row_by_email(c: sa.Connection, email: str) -> Any:
        return c.execute(
            sa.select(t.subscribers).where(t.subscribers.c.email_key == email_key(email))
        ).first()

    @staticmethod
    def _insert_subscriber(
        c: sa.Connection,
        p: NewSubscriber,
        status: SubscriberStatus,
        source: str,
        now: datetime,
        cause: str,
    ) -> int:
        row = {
            "email": p.email.strip(),
            "email_key": email_key(p.email),
            "token_id": secrets.randbits(62) or 1,
            "name": p.name,
            "status": status.value,
            "sections": _keys(p.sections),
            "digests": _keys(p.digests),
            "source": source,
            "created_at": now,
            "updated_at": now,
        }
        # Two sign-ups of one new address at once: one inserts, the other finds it (0).
        added = _insert_ignore_keys(c, t.subscribers, [row], ["email_key"], "id")
        if not added:
            return 0
        sid = added[0]
        c.execute(
            sa.insert(t.subscriber_events).values(
                subscriber_id=sid, at=now, old_status=None, new_status=status.value, cause=cause
            )
        )
        return int(sid)

    def add_subscriber(
        self,
        person: NewSubscriber,
        *,
        status: SubscriberStatus,
        source: str,
        now: datetime,
        cause: str,
    ) -> tuple[Subscriber, bool]:
        """Add ``person`` with ``status``; an address already known is returned as it is.
        Returns the subscriber and whether it was added."""
        with self.engine.begin() as c:
            row = self._row_by_email(c, person.email)
            if row is None:
                sid = self._insert_subscriber(c, person, status, source, now, cause)
                row = self._row_by_email(c, person.email)
                return self._subscriber(row), bool(sid)
            return self._subscriber(row), False

    def _one_subscriber(self, where: sa.ColumnElement[bool]) -> Subscriber | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(t.subscribers).where(where)).first()
        return None if row is None else self._subscriber(row)

    def subscriber(self, subscriber_id: int) -> Subscriber | None:
        return self._one_subscriber(t.subscribers.c.id == subscriber_id)

    def subscriber_by_token(self, token_id: int) -> Subscriber | None:
        """The subscriber a link names (links carry ``token_id``, never ``id``)."""
        return self._one_subscriber(t.subscribers.c.token_id == token_id)

    def subscriber_by_email(self, email: str) -> Subscriber | None:
        return self._one_subscriber(t.subscribers.c.email_key == email_key(email))

    def subscribers(self, statuses: Iterable[SubscriberStatus] | None = None) -> list[Subscriber]:
        """Every subscriber (or those in ``statuses``), oldest first."""
        q = sa.select(t.subscribers).order_by(t.subscribers.c.id)
        if statuses is not None:
            q = q.where(t.subscribers.c.status.in_([s.value for s in statuses]))
        with self.engine.connect() as c:
            return [self._subscriber(r) for r in c.execute(q)]

    def subscriber_times(
        self, ids: Iterable[int] | None = None
    ) -> dict[int, tuple[datetime | None, datetime | None]]:
        """When each subscriber (or those of ``ids``) was added and last changed."""
        q = sa.select(t.subscribers.c.id, t.subscribers.c.created_at, t.subscribers.c.updated_at)
        if ids is not None:
            q = q.where(t.subscribers.c.id.in_(list(ids)))
        with self.engine.connect() as c:
            return {int(r[0]): (r[1], r[2]) for r in c.execute(q)}

    def set_preferences(
        self,
        subscriber_id: int,
        *,
        sections: frozenset[str] | None,
        digests: frozenset[str] | None,
        now: datetime,
        name: str | None = None,
    ) -> None:
        """What a subscriber receives (None: everything), and their name when given."""
        values: dict[str, Any] = {
            "sections": _keys(sections),
            "digests": _keys(digests),
            "updated_at": now,
        }
        if name is not None:
            values["name"] = name
        with self.engine.begin() as c:
            c.execute(
                sa.update(t.subscribers).where(t.subscribers.c.id == subscriber_id).values(values)
            )

    def webhook_event_seen(self, provider: str, event_id: str) -> bool:
        q = sa.select(sa.func.count()).where(
            t.webhook_events.c.provider == provider,
            t.webhook_events.c.event_id == event_id[:200],
        )
        with self.engine.connect() as c:
            return bool(c.execute(q).scalar())

    def record_webhook_event(self, provider: str, event_id: str, *, now: datetime) -> bool:
        """Remember a provider's event; False when it was seen before (a redelivery)."""
        with self.engine.begin() as c:
            new = _insert_ignore(
                c,
                t.webhook_events,
                [{"provider": provider, "event_id": event_id[:200], "received_at": now}],
                ["provider", "event_id"],
            )
        return bool(new)

    def soft_bounce(
        self,
        subscriber_id: int,
        *,
        limit: int,
        now: datetime,
        cause: str,
        window: timedelta = timedelta(days=30),
    ) -> bool:
        """Count a soft bounce; ``limit`` of them in a row, each within ``window`` of the one
        before, bounce the address (suppressed). True when this one crossed the limit."""
        with self.engine.begin() as c:
            return self._soft_bounce(c, subscriber_id, limit, window, now, cause)

    def _soft_bounce(
        self,
        c: sa.Connection,
        subscriber_id: int,
        limit: int,
        window: timedelta,
        now: datetime,
        cause: str,
    ) -> bool:
        row = c.execute(
            sa.select(t.subscribers.c.soft_bounces, t.subscribers.c.soft_bounced_at).where(
                t.subscribers.c.id == subscriber_id
            )
        ).first()
        if row is None:
            return False
        recent = row.soft_bounced_at is not None and now - row.soft_bounced_at <= window
        count = (row.soft_bounces if recent else 0) + 1
        c.execute(
            sa.update(t.subscribers)
            .where(t.subscribers.c.id == subscriber_id)
            .values(soft_bounces=count, soft_bounced_at=now, updated_at=now)
        )
        if count < limit:
            return False
        changed = self._set_statuses(
            c,
            [subscriber_id],
            SubscriberStatus.BOUNCED,
            now=now,
            causes={subscriber_id: f"{count} soft bounces (limit {limit}); last: {cause}"},
            only_from=SubscriberStatus.ACTIVE,
        )
        return bool(changed)

    def apply_subscriber_event(
        self,
        *,
        provider: str,
        event_ids: Sequence[str],
        email: str,
        kind: str,
        cause: str,
        now: datetime,
        once: str | None = None,
        soft_limit: int = 3,
        soft_window: timedelta = timedelta(days=30),
    ) -> str:
        """Apply one provider event in one transaction, so an event is never marked as seen
        without its effect (nor applied twice). Returns ``duplicate`` when one of
        ``event_ids`` was seen before, ``ignored`` (unknown address, a state it does not
        change, or a soft bounce of a message already counted: ``once``), else ``applied``.

        ``kind``: ``hard_bounce`` and ``unsubscribe`` change an active, paused or pending
        subscriber; ``complaint`` any; ``soft_bounce`` counts (see :meth:`soft_bounce`).
        """
        rows = [{"provider": provider, "event_id": i[:200], "received_at": now} for i in event_ids]
        keys = ["provider", "event_id"]
        try:
            with self.engine.begin() as c:
                if len(_insert_ignore_keys(c, t.webhook_events, rows, keys)) < len(rows):
                    raise _Seen
                row = self._row_by_email(c, email)
                if row is None:
                    return "ignored"
                sid, status = int(row.id), SubscriberStatus(row.status)
                if kind == "soft_bounce":
                    first = once is None or _insert_ignore_keys(
                        c,
                        t.webhook_events,
                        [{"provider": provider, "event_id": once[:200], "received_at": now}],
                        keys,
                    )
                    if not first or status not in LEAVABLE:
                        return "ignored"
                    self._soft_bounce(c, sid, soft_limit, soft_window, now, cause)
                    return "applied"
                target = {
                    "hard_bounce": SubscriberStatus.BOUNCED,
                    "complaint": SubscriberStatus.COMPLAINED,
                    "unsubscribe": SubscriberStatus.UNSUBSCRIBED,
                }.get(kind)
                if target is None or (kind != "complaint" and status not in LEAVABLE):
                    return "ignored"
                self._set_statuses(c, [sid], target, now=now, causes={sid: cause}, only_from=status)
                return "applied"
        except _Seen:
            return "duplicate"
        except sa.exc.OperationalError as e:
            raise TransientError(f"store: cannot record a {provider} event: {e.orig}") from e

    def active_subscribers(self, digest: str | None = None) -> list[Subscriber]:
        """Those mailed: active, and receiving ``digest`` when one is named."""
        q = (
            sa.select(t.subscribers)
            .where(t.subscribers.c.status == SubscriberStatus.ACTIVE.value)
            .order_by(t.subscribers.c.id)
        )
        with self.engine.connect() as c:
            people = [self._subscriber(r) for r in c.execute(q)]
        return people if digest is None else [p for p in people if p.receives(digest)]

    def section_choices(self, digest: str | None = None) -> set[frozenset[str] | None]:
        """The distinct section choices of active subscribers (of ``digest``, when named; None
        means every section), without building a Subscriber per row: rendering needs these."""
        q = sa.select(t.subscribers.c.sections, t.subscribers.c.digests).where(
            t.subscribers.c.status == SubscriberStatus.ACTIVE.value
        )
        with self.engine.connect() as c:
            return {
                None if r[0] is None else frozenset(r[0])
                for r in c.execute(q)
                if digest is None or r[1] is None or digest in r[1]
            }

    def set_subscriber_status(
        self,
        subscriber_id: int,
        status: SubscriberStatus,
        *,
        now: datetime,
        cause: str = "set by an operator",
        only_from: SubscriberStatus | None = None,
    ) -> bool:
        """Change one subscriber's status and record the change (no record when unchanged, or
        when ``only_from`` is given and the status is another). True when it changed."""
        with self.engine.begin() as c:
            return bool(
                self._set_statuses(
                    c,
                    [subscriber_id],
                    status,
                    now=now,
                    causes={subscriber_id: cause},
                    only_from=only_from,
                )
            )

    @staticmethod
    def _set_statuses(
        c: sa.Connection,
        subscriber_ids: Iterable[int],
        status: SubscriberStatus,
        *,
        now: datetime,
        causes: Mapping[int, str],
        only_from: SubscriberStatus | None = None,
    ) -> list[int]:
        """Set ``status`` on the subscribers not already in it (and, with ``only_from``, only
        on those in that status); one audit row each. Returns the ids changed."""
        q = sa.select(t.subscribers.c.id, t.subscribers.c.status).where(
            t.subscribers.c.id.in_(list(subscriber_ids)),
            t.subscribers.c.status != status.value,
        )
        if only_from is not None:
            q = q.where(t.subscribers.c.status == only_from.value)
        changing = c.execute(q).all()
        changed: list[tuple[int, str]] = []
        for sid, old in changing:
            # Changed only if still in the status just read: of two requests racing (a
            # complaint and a "resume"), the second finds the row changed and does nothing.
            res = c.execute(
                sa.update(t.subscribers)
                .where(t.subscribers.c.id == sid, t.subscribers.c.status == old)
                .values(status=status.value, updated_at=now)
            )
            if res.rowcount:
                changed.append((sid, old))
        if not changed:
            return []
        c.execute(
            sa.insert(t.subscriber_events),
            [
                {
                    "subscriber_id": sid,
                    "at": now,
                    "old_status": old,
                    "new_status": status.value,
                    "cause": causes.get(sid, ""),
                }
                for sid, old in changed
            ],
        )
        return [sid for sid, _ in changed]

    def status_version(self, subscriber_id: int) -> int:
        """How many status changes the subscriber has had (their audit rows)."""
        q = sa.select(sa.func.count()).where(t.subscriber_events.c.subscriber_id == subscriber_id)
        with self.engine.connect() as c:
            return int(c.execute(q).scalar() or 0)

    def subscriber_events(self, subscriber_id: int) -> list[dict[str, Any]]:
        """The audit trail of one subscriber's status, oldest first."""
        q = (
            sa.select(t.subscriber_events)
            .where(t.subscriber_events.c.subscriber_id == subscriber_id)
            .order_by(t.subscriber_events.c.id)
        )
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    # Deliveries (the ledger) -------------------------------------------------------------------
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

    def release_stale(self, edition_id: str, *, now: datetime) -> int:
        """Rows a crashed run left in ``sending`` go back to pending. Call it only while
        holding the edition's delivery lock, so that no live run is sending them."""
        with self.engine.begin() as c:
            res = c.execute(
                sa.update(t.deliveries)
                .where(t.deliveries.c.edition_id == edition_id)
                .where(t.deliveries.c.status == DeliveryStatus.SENDING.value)
                .values(status=DeliveryStatus.PENDING.value, updated_at=now)
            )
        return res.rowcount or 0

    def release(self, delivery_ids: Iterable[int], *, now: datetime) -> None:
        """Give claimed rows back (nothing of them was sent): the claim's attempt is undone."""
        ids = list(delivery_ids)
        if not ids:
            return
        attempts = t.deliveries.c.attempts
        with self.engine.begin() as c:
            c.execute(
                sa.update(t.deliveries)
                .where(t.deliveries.c.id.in_(ids))
                .where(t.deliveries.c.status == DeliveryStatus.SENDING.value)
                .values(
                    status=DeliveryStatus.PENDING.value,
                    attempts=sa.case((attempts > 0, attempts - 1), else_=0),
                    updated_at=now,
                )
            )

    def in_flight(self, delivery_ids: Iterable[int]) -> dict[int, int]:
        """Of these rows, those still ``sending``, with how often each has been tried."""
        ids = list(delivery_ids)
        q = sa.select(t.deliveries.c.id, t.deliveries.c.attempts).where(
            t.deliveries.c.id.in_(ids), t.deliveries.c.status == DeliveryStatus.SENDING.value
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

    def claim_batch(self, edition_id: str, limit: int, *, now: datetime) -> list[Claimed]:
        """Move up to ``limit`` pending rows of active subscribers to ``sending``.

        The UPDATE re-checks ``pending`` and returns the ids it changed, so a row is claimed by
        one caller only, even if two select the same candidates.
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
    ) -> list[int]:
        """Record a provider's answers in one transaction; returns the subscribers suppressed.

        Only rows still ``sending`` change, so an answer replayed from a journal never
        overwrites a newer state. A transient failure with a time in ``retry_at`` waits for it;
        one without is out of attempts (``exhausted``). A hard bounce suppresses the subscriber
        (recorded in the audit table with the provider's reason).
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
        still_sending = t.deliveries.c.status == DeliveryStatus.SENDING.value
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

    # Locks ------------------------------------------------------------------------------------
    # Leases use the wall clock, not a run's (possibly fixed) ``now``: they guard real time.
    def acquire_lock(self, name: str, owner: str, *, ttl: timedelta) -> None:
        """Take the lease ``name`` or raise DeliveryLocked naming who holds it.

        A lease whose holder's time ran out, or whose holder was a process on this host that no
        longer exists (a crash), is taken over.
        """
        now = datetime.now(UTC)
        row = {"name": name, "owner": owner, "acquired_at": now, "expires_at": now + ttl}
        with self.engine.begin() as c:
            if _insert_ignore(c, t.locks, [row], ["name"]):
                return
            held = c.execute(sa.select(t.locks).where(t.locks.c.name == name)).first()
            if held is None or held.owner == owner or self._stale(held, now):
                taken = c.execute(
                    sa.update(t.locks)
                    .where(t.locks.c.name == name)
                    .where(t.locks.c.owner == (held.owner if held else owner))
                    .values(owner=owner, acquired_at=now, expires_at=now + ttl)
                )
                if taken.rowcount:
                    return
                held = c.execute(sa.select(t.locks).where(t.locks.c.name == name)).first()
        assert held is not None
        raise DeliveryLocked(
            f"{name}: another run ({held.owner}) holds it since "
            f"{held.acquired_at:%Y-%m-%d %H:%M:%S} UTC, until {held.expires_at:%H:%M:%S} UTC "
            "unless it renews; wait for it to finish"
        )

    @staticmethod
    def _stale(held: Any, now: datetime) -> bool:
        if held.expires_at <= now:
            return True
        host, _, rest = held.owner.partition(":")
        pid = rest.partition(":")[0]
        return host == socket.gethostname() and pid.isdigit() and not _process_alive(int(pid))

    def renew_lock(self, name: str, owner: str, *, ttl: timedelta) -> None:
        """Extend our lease; raise DeliveryLocked if it is no longer ours."""
        now = datetime.now(UTC)
        with self.engine.begin() as c:
            res = c.execute(
                sa.update(t.locks)
                .where(t.locks.c.name == name, t.locks.c.owner == owner)
                .values(expires_at=now + ttl)
            )
        if not res.rowcount:
            raise DeliveryLocked(f"{name}: the lease was lost (taken over by another run)")

    def release_lock(self, name: str, owner: str) -> None:
        with self.engine.begin() as c:
            c.execute(sa.delete(t.locks).where(t.locks.c.name == name, t.locks.c.owner == owner))
