"""Subscribers in the store: adding them, their choices, their status with its audit trail,
soft bounces, and providers' webhook events applied once. (Importing and exporting them in
bulk: ``imports``.)"""

from __future__ import annotations

import json
import secrets
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from digest.errors import TransientError
from digest.models import (
    LEAVABLE,
    DeliveryStatus,
    NewSubscriber,
    Subscriber,
    SubscriberStatus,
)
from digest.store import schema as t
from digest.store.base import StoreBase, _insert_ignore, _insert_ignore_keys

# An import tells its progress hook every this many people.
IMPORT_STEP = 200

# Subscribers read at once by the readers that go through everyone (keyset pages by id): the
# memory they take is this many rows, however long the list.
PAGE = 10_000


@dataclass(frozen=True)
class ImportCounts:
    added: int
    updated: int
    kept_unsubscribed: int


def new_token_id() -> int:
    """A new subscriber's ``token_id``: what their links carry, random and never 0."""
    return secrets.randbits(62) or 1


def _keys(keys: frozenset[str] | None) -> list[str] | None:
    """Chosen keys as stored: a sorted JSON list, or NULL for "all"."""
    return None if keys is None else sorted(keys)


class _Seen(Exception):
    """An event id was recorded before: roll the transaction back."""


def _json(text: str | None) -> Any:
    """A JSON column read as text (to compare values in SQL); NULL (and JSON null) is None."""
    return None if text is None else json.loads(text)


def email_key(email: str) -> str:
    """An address as the store compares it: addresses differing only in case or in
    compatibility characters (fullwidth letters; NFKC, as ``normalise_email``) are one."""
    return unicodedata.normalize("NFKC", email.strip()).casefold()


# The columns a Subscriber is built from (``SubscriberStore._subscriber``): what a query joining
# another table selects, so that no other column of the same name (``id``, ``status``) stands
# in for the subscriber's.
SUBSCRIBER_COLUMNS = tuple(
    t.subscribers.c[name]
    for name in ("id", "email", "name", "sections", "digests", "status", "source", "token_id")
)


class SubscriberStore(StoreBase):
    """The ``subscribers`` table, their status changes (``subscriber_events``) and the
    providers' events already seen (``webhook_events``)."""

    @staticmethod
    def _subscriber(row: Any) -> Subscriber:
        """A subscriber from a row holding ``SUBSCRIBER_COLUMNS`` under their own names."""
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
            "token_id": new_token_id(),
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
        """Every subscriber (or those in ``statuses``), oldest first, as one list: a helper for
        small stores (tests) only. Nothing under ``digest/`` or ``flows/`` calls it (a test
        checks): what goes through everyone reads :meth:`subscriber_pages`, and counts come
        from :meth:`subscriber_counts`."""
        q = sa.select(t.subscribers).order_by(t.subscribers.c.id)
        if statuses is not None:
            q = q.where(t.subscribers.c.status.in_([s.value for s in statuses]))
        with self.engine.connect() as c:
            return [self._subscriber(r) for r in c.execute(q)]

    def subscriber_counts(
        self, statuses: Iterable[SubscriberStatus] | None = None
    ) -> dict[SubscriberStatus, int]:
        """How many subscribers are in each status (only ``statuses`` when given), counted by
        the database: one row per status, however long the list. Statuses nobody is in are
        left out."""
        status = t.subscribers.c.status
        q = sa.select(status, sa.func.count()).group_by(status)
        if statuses is not None:
            q = q.where(status.in_([s.value for s in statuses]))
        with self.engine.connect() as c:
            return {SubscriberStatus(s): int(n) for s, n in c.execute(q)}

    def subscriber_times(
        self, ids: Iterable[int]
    ) -> dict[int, tuple[datetime | None, datetime | None]]:
        """When each subscriber of ``ids`` was added and last changed (an export reads them
        with its rows: ``export_subscribers``)."""
        q = sa.select(
            t.subscribers.c.id, t.subscribers.c.created_at, t.subscribers.c.updated_at
        ).where(t.subscribers.c.id.in_(list(ids)))
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
        """Those mailed (active, and receiving ``digest`` when one is named), as one list: a
        helper for small stores (tests) only, never called under ``digest/`` or ``flows/`` (a
        test checks); what goes through everyone reads :meth:`subscriber_pages`."""
        return [p for page in self.subscriber_pages(digest=digest) for p in page]

    def _pages(
        self, q: sa.Select[Any], size: int | None, after: int | None = None
    ) -> Iterator[list[Any]]:
        """``q``'s rows (it selects ``subscribers.id``) in keyset pages of ``size`` (default
        :data:`PAGE`) by id, from the first id above ``after``, each read in its own short
        transaction: nothing is held open between pages, and a page's rows are all this
        holds."""
        size = size or PAGE
        sid = t.subscribers.c.id
        while True:
            page = q.order_by(sid).limit(size)
            if after is not None:
                page = page.where(sid > after)
            with self.engine.connect() as c:
                rows = list(c.execute(page))
            if not rows:
                return
            yield rows
            if len(rows) < size:
                return
            after = rows[-1].id

    def subscriber_pages(
        self,
        statuses: Iterable[SubscriberStatus] | None = (SubscriberStatus.ACTIVE,),
        *,
        digest: str | None = None,
        unsent_in: str | None = None,
        size: int | None = None,
        after: int | None = None,
    ) -> Iterator[list[Subscriber]]:
        """Subscribers in ``statuses`` (default: active; None: all), oldest first, a page of at
        most ``size`` (default :data:`PAGE`) at a time, from the first id above ``after`` when
        given; only those receiving ``digest`` when one is named, and only those the ledger of
        edition ``unsent_in`` has not recorded as submitted when given."""
        q = sa.select(t.subscribers)
        if statuses is not None:
            q = q.where(t.subscribers.c.status.in_([s.value for s in statuses]))
        if unsent_in is not None:
            q = q.where(
                ~sa.exists().where(
                    t.deliveries.c.edition_id == unsent_in,
                    t.deliveries.c.subscriber_id == t.subscribers.c.id,
                    t.deliveries.c.status == DeliveryStatus.SUBMITTED.value,
                )
            )
        for rows in self._pages(q, size, after):
            people = [self._subscriber(r) for r in rows]
            yield people if digest is None else [p for p in people if p.receives(digest)]

    def choice_pages(
        self, digest: str | None = None, *, size: int | None = None
    ) -> Iterator[list[tuple[int, frozenset[str] | None]]]:
        """Each active subscriber's id and chosen sections (None: every section), receiving
        ``digest`` when one is named, a page of at most ``size`` rows at a time, by id: what
        the ledger is written from, without building a Subscriber per row."""
        s = t.subscribers.c
        q = sa.select(s.id, s.sections, s.digests).where(s.status == SubscriberStatus.ACTIVE.value)
        for rows in self._pages(q, size):
            yield [
                (int(r[0]), None if r[1] is None else frozenset(r[1]))
                for r in rows
                if digest is None or r[2] is None or digest in r[2]
            ]

    def section_choices(self, digest: str | None = None) -> set[frozenset[str] | None]:
        """The distinct section choices of active subscribers (of ``digest``, when named; None
        means every section), without building a Subscriber per row: rendering needs these.
        The database returns each distinct pair of choices once, not a row per subscriber."""
        s = t.subscribers.c
        q = (
            sa.select(sa.cast(s.sections, sa.Text), sa.cast(s.digests, sa.Text))
            .where(s.status == SubscriberStatus.ACTIVE.value)
            .distinct()
        )
        with self.engine.connect() as c:
            pairs = [(_json(a), _json(b)) for a, b in c.execute(q)]
        return {
            None if sections is None else frozenset(sections)
            for sections, digests in pairs
            if digest is None or digests is None or digest in digests
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
        if status not in LEAVABLE:
            # Left or suppressed: their per-subscriber click records go (the counts stay).
            c.execute(
                sa.delete(t.subscriber_clicks).where(
                    t.subscriber_clicks.c.subscriber_id.in_([sid for sid, _ in changed])
                )
            )
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
