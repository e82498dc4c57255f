"""The ledger and its lease over a real store (SQLite and PostgreSQL): giving claims back,
replaying journals after a crash, the lease that one run at a time holds, hard bounces and the
run report."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import timedelta

import pytest

from digest.delivery.base import OnResult, ProviderBase, report, submitted, transient
from digest.delivery.memory import MemoryProvider
from digest.errors import DeliveryLocked
from digest.models import (
    DeliveryStatus,
    EditionStatus,
    OutgoingMessage,
    SendResult,
    SendStatus,
    SubscriberStatus,
)
from digest.steps import ledger
from digest.steps.compose import approve, compose
from digest.steps.ledger import DeliveryReport, delivery_lock, journal_root, prepare_delivery
from digest.store import journal as journals
from tests.conftest import article
from tests.steps.world import NOW, crash_mid_batch, deliver_all, run, write_journal


def test_a_second_run_of_the_same_edition_is_refused(setup) -> None:  # type: ignore[no-untyped-def]
    settings, store, edition = setup
    with delivery_lock(store, edition), pytest.raises(DeliveryLocked, match=edition.id):
        deliver_all(settings, store, edition, MemoryProvider())


# Giving a claim back -------------------------------------------------------------------------


def test_release_undoes_the_claims_attempt(world) -> None:  # type: ignore[no-untyped-def]
    w = world(recipients=3)
    subs = w.store.active_subscribers()
    w.store.create_deliveries(w.edition.id, [s.id for s in subs], now=NOW)
    first = w.store.claim_batch(w.edition.id, 10, now=NOW)
    assert [c.attempts for c in first] == [1, 1, 1]
    w.store.release([c.delivery_id for c in first], now=NOW)
    assert all(r["attempts"] == 0 for r in w.ledger().values())
    second = w.store.claim_batch(w.edition.id, 10, now=NOW)
    assert [c.attempts for c in second] == [1, 1, 1]
    assert {c.delivery_id for c in second} == {c.delivery_id for c in first}


# Replaying a crashed run's journal -----------------------------------------------------------


def test_replayed_transient_answers_respect_the_attempt_cap(world) -> None:  # type: ignore[no-untyped-def]
    w = world(recipients=3, delivery={"retry": {"attempts": 1, "wait": 0}})
    ids = crash_mid_batch(w)
    assert len(ids) == 3
    key = f"{w.edition.id}.x"
    write_journal(w, {ids[0]: transient(key, "4.2.0 busy"), ids[1]: transient(key, "busy")})

    provider = MemoryProvider()
    result = run(w, provider)
    assert result.prepared.exhausted == 2 and result.prepared.transient == 0
    ledger = w.ledger()
    by_id = {r["id"]: r for r in ledger.values()}
    for delivery_id in ids[:2]:
        assert by_id[delivery_id]["status"] == DeliveryStatus.FAILED.value
        assert by_id[delivery_id]["failure"] == "exhausted"
    # The row without a journaled answer went back and was sent; the exhausted ones were not.
    unanswered = next(e for e, r in ledger.items() if r["id"] == ids[2])
    assert [m.recipient for m in provider.sent] == [unanswered]
    assert result.counts["exhausted"] == 2 and result.counts["submitted"] == 1
    assert w.store.edition(w.edition.id).status is EditionStatus.SENT  # type: ignore[union-attr]


def test_replayed_submitted_answers_are_recorded_and_the_journal_removed(world) -> None:  # type: ignore[no-untyped-def]
    w = world(recipients=3)
    ids = crash_mid_batch(w)
    write_journal(
        w,
        {
            ids[0]: submitted(f"{w.edition.id}.a", "prov-0"),
            ids[1]: submitted(f"{w.edition.id}.b", "prov-1"),
        },
    )
    assert w.journal_files()
    with delivery_lock(w.store, w.edition):
        prepared = prepare_delivery(w.settings, w.store, w.edition, now=NOW)
    # Submitted by the crashed run, recorded by this one: not this run's sending.
    assert (prepared.recovered, prepared.submitted) == (2, 0)
    by_id = {r["id"]: r for r in w.ledger().values()}
    assert by_id[ids[0]]["status"] == "submitted" and by_id[ids[0]]["provider_id"] == "prov-0"
    assert by_id[ids[1]]["status"] == "submitted" and by_id[ids[1]]["provider_id"] == "prov-1"
    assert by_id[ids[2]]["status"] == "pending"
    assert w.journal_files() == []
    assert not journals.edition_dir(journal_root(w.settings), w.edition.id).exists()

    provider = MemoryProvider()
    result = run(w, provider)
    assert len(provider.sent) == 1 and result.counts["submitted"] == 3
    assert result.sent.submitted == 1


# Leaving while a crashed run held one's row --------------------------------------------------


def test_unsubscribing_while_sending_does_not_hold_the_edition_open(world) -> None:  # type: ignore[no-untyped-def]
    w = world(recipients=3)
    crash_mid_batch(w)
    leaver = w.emails[1]
    w.store.set_subscriber_status(w.subscriber_id(leaver), SubscriberStatus.UNSUBSCRIBED, now=NOW)

    provider = MemoryProvider()
    result = run(w, provider)
    assert leaver not in {m.recipient for m in provider.sent}
    assert w.ledger()[leaver]["status"] == DeliveryStatus.SKIPPED.value
    assert result.counts["submitted"] == 2 and result.counts["pending"] == 0
    assert w.store.edition(w.edition.id).status is EditionStatus.SENT  # type: ignore[union-attr]


# The lease outlives a slow batch -------------------------------------------------------------


class GatedProvider(ProviderBase):
    """Holds its batch until the test opens the gate (a slow server), then submits it."""

    name = "gated"

    def __init__(self) -> None:
        self.started, self.gate = threading.Event(), threading.Event()
        self.sent: list[str] = []

    def send(
        self, messages: Sequence[OutgoingMessage], on_result: OnResult | None = None
    ) -> list[SendResult]:
        self.started.set()
        self.gate.wait(timeout=20)
        results: list[SendResult] = []
        for m in messages:
            self.sent.append(m.recipient)
            report(results, submitted(m.key, f"gated-{len(self.sent)}"), on_result)
        return results


def test_the_heartbeat_keeps_the_lease_through_a_slow_batch(
    world, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    ttl = timedelta(seconds=1)
    monkeypatch.setattr(ledger, "LOCK_TTL", ttl)
    w = world(recipients=3)
    provider = GatedProvider()
    errors: list[BaseException] = []

    def background() -> None:
        try:
            run(w, provider)
        except BaseException as e:  # reported by the test below
            errors.append(e)

    sender = threading.Thread(target=background)
    sender.start()
    name = f"deliver:{w.edition.id}"
    try:
        assert provider.started.wait(timeout=10), "the run never reached the provider"
        time.sleep(ttl.total_seconds() * 1.6)  # the lease taken at the start has run out by now
        with pytest.raises(DeliveryLocked):
            w.store.acquire_lock(name, "other-owner", ttl=ttl)
    finally:
        w.store.release_lock(name, "other-owner")
        provider.gate.set()
        sender.join(timeout=30)
    assert not sender.is_alive()
    assert errors == []
    assert sorted(provider.sent) == w.emails


# A hard bounce, end to end -------------------------------------------------------------------


def test_a_hard_bounce_suppresses_the_subscriber_for_later_editions(world) -> None:  # type: ignore[no-untyped-def]
    w = world(recipients=3)
    bouncer = w.emails[0]
    provider = MemoryProvider(fail={bouncer: SendStatus.PERMANENT})
    result = run(w, provider)
    assert result.sent.suppressed == 1 and result.sent.permanent == 1
    assert "hard bounce" in " ".join(result.sent.failures)
    sid = w.subscriber_id(bouncer)
    assert sid not in {s.id for s in w.store.active_subscribers()}
    events = w.store.subscriber_events(sid)
    assert events and events[-1]["new_status"] == SubscriberStatus.BOUNCED.value
    assert "hard bounce" in events[-1]["cause"]

    later = NOW + timedelta(days=7)
    w.store.save_articles([article(n) for n in (4, 5, 6)], now=later)
    outcome = compose(w.settings, w.store, "weekly", now=later)
    assert outcome.edition is not None and outcome.edition.id != w.edition.id
    nxt = approve(w.store, outcome.edition, now=later)
    provider.fail = {}
    provider.sent.clear()
    second = run(w, provider, edition=nxt, at=later)
    assert sorted(m.recipient for m in provider.sent) == w.emails[1:]
    assert second.counts["submitted"] == 2 and second.prepared.recipients == 2


# The run report ------------------------------------------------------------------------------


def test_the_summary_names_every_count() -> None:
    r = DeliveryReport(
        "weekly-2026-48",
        submitted=40,
        recovered=5,
        transient=1,
        permanent=2,
        exhausted=3,
        skipped=4,
        suppressed=2,
        elapsed=2.0,
        waited=90.0,
    )
    text = r.summary()
    for part in (
        "40 submitted",
        "6 failed",
        "1 transient",
        "2 permanent",
        "3 out of attempts",
        "4 skipped",
        "2 suppressed",
        "20 messages/s",
        "90 s waiting for retries",
        "5 submitted by an interrupted run",
    ):
        assert part in text, (part, text)
