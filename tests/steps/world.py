"""A small publication over a real store for the delivery steps' tests: an approved edition,
its subscribers, and one delivery run as the edition run does it (lock, prepare, deliver,
finish). The fixtures that build it are in ``conftest.py``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from digest.config import Settings
from digest.models import DeliveryStatus, Edition, SendResult
from digest.render.variants import render_variants
from digest.steps.deliver import deliver
from digest.steps.ledger import (
    DeliveryReport,
    delivery_lock,
    finish_delivery,
    journal_root,
    prepare_delivery,
)
from digest.steps.sending import Sent, send_rows, sender
from digest.store import Store
from digest.store import journal as journals
from digest.store import schema as t

NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclass
class World:
    settings: Settings
    store: Store
    edition: Edition
    emails: list[str]

    def subscriber_id(self, address: str) -> int:
        with self.store.engine.connect() as c:
            return int(
                c.execute(
                    sa.select(t.subscribers.c.id).where(t.subscribers.c.email == address)
                ).scalar_one()
            )

    def ledger(self) -> dict[str, dict[str, Any]]:
        """The edition's ledger rows by recipient address."""
        q = (
            sa.select(
                t.subscribers.c.email,
                t.deliveries.c.id,
                t.deliveries.c.status,
                t.deliveries.c.failure,
                t.deliveries.c.attempts,
                t.deliveries.c.provider_id,
            )
            .join(t.subscribers, t.subscribers.c.id == t.deliveries.c.subscriber_id)
            .where(t.deliveries.c.edition_id == self.edition.id)
        )
        with self.store.engine.connect() as c:
            return {r.email: dict(r._mapping) for r in c.execute(q)}

    def with_status(self, status: DeliveryStatus) -> set[str]:
        return {e for e, r in self.ledger().items() if r["status"] == status.value}

    def journal_files(self) -> list[Any]:
        return sorted(journal_root(self.settings).rglob("*.jsonl"))


@dataclass
class Run:
    prepared: DeliveryReport
    sent: DeliveryReport
    counts: dict[str, int]


def run(
    w: World,
    provider: Any,
    *,
    edition: Edition | None = None,
    at: datetime = NOW,
    **kw: Any,
) -> Run:
    """One delivery run as the flow does it: lock, prepare, deliver, finish."""
    edition = edition or w.store.edition(w.edition.id)
    assert edition is not None
    variants = render_variants(w.settings, edition, w.store.section_choices())
    with delivery_lock(w.store, edition) as owner:
        prepared = prepare_delivery(w.settings, w.store, edition, now=at)
        sent = deliver(
            w.settings, w.store, edition, variants, now=at, owner=owner, provider=provider, **kw
        )
        counts = finish_delivery(w.store, edition, now=at)
    return Run(prepared, sent, counts)


def crash_mid_batch(w: World) -> list[int]:
    """What a run killed while sending leaves behind: its rows claimed (``sending``)."""
    with delivery_lock(w.store, w.edition):
        prepare_delivery(w.settings, w.store, w.edition, now=NOW)
        claimed = w.store.claim_batch(w.edition.id, 100, now=NOW)
    return [c.delivery_id for c in claimed]


def crash_mid_send(settings: Settings, store: Store, edition: Edition, sent: int) -> None:
    """A run killed mid-batch after handing ``sent`` messages to the provider: its rows
    claimed, those answers journaled (the real send loop), nothing recorded in the ledger."""
    variants = render_variants(settings, edition, store.section_choices())
    with delivery_lock(store, edition):
        prepare_delivery(settings, store, edition, now=NOW)
        claimed = store.claim_batch(edition.id, 1000, now=NOW)
        provider, builder = sender(settings, edition, variants, now=NOW, rate=0)
        journal = journals.Journal(journal_root(settings), edition.id)
        rows = [(c.delivery_id, c.subscriber) for c in claimed[:sent]]
        send_rows(builder, provider, journal, rows, Sent())
        journal.close(remove=False)
        provider.close()


def write_journal(w: World, answers: dict[int, SendResult]) -> None:
    """Journal lines as the crashed run wrote them before it died."""
    journal = journals.Journal(journal_root(w.settings), w.edition.id)
    for delivery_id, result in answers.items():
        journal.write(delivery_id, result)
    journal.close(remove=False)


def deliver_all(settings, store, edition, provider, variants=None, at=NOW, **kw):  # type: ignore[no-untyped-def]
    variants = (
        variants
        if variants is not None
        else render_variants(settings, edition, store.section_choices())
    )
    total = DeliveryReport(edition.id)
    with delivery_lock(store, edition) as owner:
        total.add(prepare_delivery(settings, store, edition, now=at))
        total.add(
            deliver(
                settings, store, edition, variants, now=at, owner=owner, provider=provider, **kw
            )
        )
        counts = finish_delivery(store, edition, now=at)
    return total, counts
