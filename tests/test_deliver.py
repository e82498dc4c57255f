"""The deliver stage over a real store (SQLite and PostgreSQL): interrupted batches, outages,
replaying journals after a crash, the delivery lease, hard bounces, the run report and the
process pool."""

from __future__ import annotations

import email
import errno
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from typing import Any

import pytest
import sqlalchemy as sa

from digest import deliver, jobs
from digest.config import Settings
from digest.delivery.base import OnResult, ProviderBase, report, submitted, transient
from digest.delivery.memory import MemoryProvider
from digest.errors import DeliveryLocked
from digest.models import (
    DeliveryStatus,
    Edition,
    EditionStatus,
    NewSubscriber,
    OutgoingMessage,
    SendResult,
    SendStatus,
    SubscriberStatus,
)
from digest.store import Store
from digest.store import journal as journals
from digest.store import schema as t
from tests.conftest import article

NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)


# A small publication -----------------------------------------------------------------------------


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
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
        return sorted(deliver.journal_root(self.settings).rglob("*.jsonl"))


@pytest.fixture
def world(make_settings, db_url: str) -> Iterator[Callable[..., World]]:  # type: ignore[no-untyped-def]
    """Builds an approved edition with ``recipients`` subscribers who take every section."""
    stores: list[Store] = []

    def build(recipients: int = 3, delivery: dict[str, Any] | None = None) -> World:
        options = _merge({"retry": {"wait": 0}}, delivery or {})
        settings = make_settings({"delivery": options, "store": {"url": db_url}})
        store = Store.open(settings.database_url)
        stores.append(store)
        store.save_articles(
            [article(1), article(2), article(3, source="analysis", categories=("Europe",))],
            now=NOW,
        )
        emails = [f"r{i:02d}@example.org" for i in range(recipients)]
        store.import_subscribers([NewSubscriber(email=e) for e in emails], now=NOW)
        outcome = jobs.compose(settings, store, "weekly", now=NOW)
        assert outcome.edition is not None
        edition = jobs.approve(store, outcome.edition, now=NOW)
        return World(settings, store, edition, emails)

    yield build
    for store in stores:
        store.close()


@dataclass
class Run:
    prepared: deliver.DeliveryReport
    sent: deliver.DeliveryReport
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
    variants = deliver.render_variants(w.settings, edition, w.store.section_choices())
    with deliver.delivery_lock(w.store, edition) as owner:
        prepared = deliver.prepare_delivery(
            w.settings, w.store, edition, w.store.active_subscribers(), now=at
        )
        sent = deliver.deliver(
            w.settings, w.store, edition, variants, now=at, owner=owner, provider=provider, **kw
        )
        counts = deliver.finish_delivery(w.store, edition, now=at)
    return Run(prepared, sent, counts)


def crash_mid_batch(w: World) -> list[int]:
    """What a run killed while sending leaves behind: its rows claimed (``sending``)."""
    with deliver.delivery_lock(w.store, w.edition):
        deliver.prepare_delivery(
            w.settings, w.store, w.edition, w.store.active_subscribers(), now=NOW
        )
        claimed = w.store.claim_batch(w.edition.id, 100, now=NOW)
    return [c.delivery_id for c in claimed]


def write_journal(w: World, answers: dict[int, SendResult]) -> None:
    """Journal lines as the crashed run wrote them before it died."""
    journal = journals.Journal(deliver.journal_root(w.settings), w.edition.id)
    for delivery_id, result in answers.items():
        journal.write(delivery_id, result)
    journal.close(remove=False)


# Providers scripted for these tests --------------------------------------------------------------


class Interrupted(BaseException):
    """Stands for an interrupt (Ctrl-C, a shutdown) arriving mid-batch."""


class HaltingProvider(ProviderBase):
    """Submits messages one at a time, answering each through ``on_result`` as the real
    providers do; on its first batch, raises ``error`` after ``halt_after`` messages."""

    name = "halting"

    def __init__(self, *, halt_after: int | None = None, error: BaseException | None = None):
        self.halt_after, self.error = halt_after, error
        self.sent: list[str] = []
        self.answered: list[str] = []  # recipients whose answer reached on_result

    def send(
        self, messages: Sequence[OutgoingMessage], on_result: OnResult | None = None
    ) -> list[SendResult]:
        results: list[SendResult] = []
        for i, message in enumerate(messages):
            if self.halt_after is not None and i == self.halt_after and self.error is not None:
                error, self.halt_after = self.error, None
                raise error
            self.sent.append(message.recipient)
            self.answered.append(message.recipient)
            report(results, submitted(message.key, f"halt-{len(self.sent)}"), on_result)
        self.halt_after = None
        return results


class RetryAfterProvider(ProviderBase):
    """Submits everyone but ``refuses``, who is told to come back in ``retry_after`` seconds."""

    name = "retry-after"

    def __init__(self, refuses: str, retry_after: float) -> None:
        self.refuses, self.retry_after = refuses, retry_after
        self.sent: list[str] = []

    def send(
        self, messages: Sequence[OutgoingMessage], on_result: OnResult | None = None
    ) -> list[SendResult]:
        results: list[SendResult] = []
        for m in messages:
            if m.recipient == self.refuses:
                r = transient(m.key, "try later", retry_after=self.retry_after)
            else:
                self.sent.append(m.recipient)
                r = submitted(m.key, f"ra-{len(self.sent)}")
            report(results, r, on_result)
        return results


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


# 1. A batch cut short ----------------------------------------------------------------------------


@pytest.mark.parametrize("cause", ["value-error", "interrupt", "journal-write"])
def test_a_batch_cut_short_keeps_what_was_answered_and_gives_back_the_rest(
    world, monkeypatch: pytest.MonkeyPatch, cause: str
) -> None:  # type: ignore[no-untyped-def]
    w = world(recipients=6, delivery={"batch_size": 10})
    expected: type[BaseException]
    if cause == "value-error":
        provider, expected = HaltingProvider(halt_after=3, error=ValueError("bug")), ValueError
    elif cause == "interrupt":
        provider, expected = HaltingProvider(halt_after=3, error=Interrupted()), Interrupted
    else:
        # The disk fills up: the fourth answer cannot be journaled.
        provider, expected = HaltingProvider(), OSError
        write = journals.Journal.write
        calls = [0]

        def failing_write(self: journals.Journal, delivery_id: int, result: SendResult) -> None:
            calls[0] += 1
            if calls[0] == 4:
                raise OSError(errno.ENOSPC, "No space left on device")
            write(self, delivery_id, result)

        monkeypatch.setattr(journals.Journal, "write", failing_write)

    with pytest.raises(expected):
        run(w, provider)
    monkeypatch.undo()

    answered = set(provider.answered)
    assert answered, "the provider answered part of the batch before it stopped"
    ledger = w.ledger()
    # What the provider answered stays submitted: it must not go out again.
    assert w.with_status(DeliveryStatus.SUBMITTED) == answered
    assert all(ledger[e]["provider_id"] for e in answered)
    # The rest goes back to the queue, its claim's attempt undone.
    rest = set(w.emails) - answered
    assert w.with_status(DeliveryStatus.PENDING) == rest
    assert all(ledger[e]["attempts"] == 0 for e in rest)
    assert not w.with_status(DeliveryStatus.SENDING)

    again = run(w, provider)
    assert again.counts["submitted"] == 6
    sends = Counter(provider.sent)
    assert set(sends) == set(w.emails)
    assert [e for e, n in sends.items() if n > 1] == [], "nobody gets the edition twice"
    assert w.store.edition(w.edition.id).status is EditionStatus.SENT  # type: ignore[union-attr]


# 2. An outage answered message by message --------------------------------------------------------


def test_an_outage_stops_claiming_after_the_first_batch(world) -> None:  # type: ignore[no-untyped-def]
    w = world(recipients=6, delivery={"batch_size": 2, "retry": {"wait": 0}})
    provider = MemoryProvider(fail={e: SendStatus.TRANSIENT for e in w.emails})
    result = run(w, provider)
    assert len(provider.batches) == 1, "after a batch of only transient answers, claim no more"
    ledger = w.ledger()
    first = {e for e, r in ledger.items() if r["status"] == DeliveryStatus.FAILED.value}
    assert len(first) == 2
    assert all(ledger[e]["failure"] == "transient" and ledger[e]["attempts"] == 1 for e in first)
    rest = set(w.emails) - first
    assert {e for e, r in ledger.items() if r["status"] == DeliveryStatus.PENDING.value} == rest
    assert all(ledger[e]["attempts"] == 0 for e in rest), "untried rows keep all their attempts"
    assert result.sent.transient == 2 and result.sent.exhausted == 0
    assert w.store.edition(w.edition.id).status is EditionStatus.SENDING  # type: ignore[union-attr]


# 3. Giving a claim back --------------------------------------------------------------------------


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


# 4-5. Replaying a crashed run's journal ----------------------------------------------------------


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
    with deliver.delivery_lock(w.store, w.edition):
        prepared = deliver.prepare_delivery(
            w.settings, w.store, w.edition, w.store.active_subscribers(), now=NOW
        )
    assert prepared.submitted == 2
    by_id = {r["id"]: r for r in w.ledger().values()}
    assert by_id[ids[0]]["status"] == "submitted" and by_id[ids[0]]["provider_id"] == "prov-0"
    assert by_id[ids[1]]["status"] == "submitted" and by_id[ids[1]]["provider_id"] == "prov-1"
    assert by_id[ids[2]]["status"] == "pending"
    assert w.journal_files() == []
    assert not journals.edition_dir(deliver.journal_root(w.settings), w.edition.id).exists()

    provider = MemoryProvider()
    result = run(w, provider)
    assert len(provider.sent) == 1 and result.counts["submitted"] == 3


# 6. Leaving while a crashed run held one's row ---------------------------------------------------


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


# 7. The lease outlives a slow batch --------------------------------------------------------------


def test_the_heartbeat_keeps_the_lease_through_a_slow_batch(
    world, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    ttl = timedelta(seconds=1)
    monkeypatch.setattr(deliver, "LOCK_TTL", ttl)
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


# 8. A hard bounce, end to end --------------------------------------------------------------------


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
    outcome = jobs.compose(w.settings, w.store, "weekly", now=later)
    assert outcome.edition is not None and outcome.edition.id != w.edition.id
    nxt = jobs.approve(w.store, outcome.edition, now=later)
    provider.fail = {}
    provider.sent.clear()
    second = run(w, provider, edition=nxt, at=later)
    assert sorted(m.recipient for m in provider.sent) == w.emails[1:]
    assert second.counts["submitted"] == 2 and second.prepared.recipients == 2


# 9. The run report -------------------------------------------------------------------------------


def test_the_summary_names_every_count() -> None:
    r = deliver.DeliveryReport(
        "weekly-2026-48",
        submitted=40,
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
    ):
        assert part in text, (part, text)


def test_a_real_run_reports_its_counts(world) -> None:  # type: ignore[no-untyped-def]
    w = world(recipients=4, delivery={"retry": {"attempts": 1, "wait": 0}})
    provider = MemoryProvider(
        fail={w.emails[0]: SendStatus.PERMANENT, w.emails[1]: SendStatus.TRANSIENT}
    )
    result = run(w, provider)
    r = result.sent
    assert (r.submitted, r.permanent, r.exhausted, r.suppressed) == (2, 1, 1, 1)
    text = r.summary()
    for part in ("2 submitted", "0 transient", "1 permanent", "1 out of attempts", "1 suppressed"):
        assert part in text, (part, text)
    assert "messages/s" in text


def test_elapsed_leaves_out_the_waits_for_retries(world) -> None:  # type: ignore[no-untyped-def]
    retry = {"attempts": 3, "base_delay": 1, "max_delay": 120, "wait": 600}
    w = world(recipients=3, delivery={"retry": retry})
    provider = RetryAfterProvider(w.emails[0], retry_after=45)
    clock = [NOW]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += timedelta(seconds=seconds)

    result = run(w, provider, clock=lambda: clock[0], sleep=sleep)
    # Three tries of the refused one: two waits of the provider's 45 s each.
    assert sleeps == [pytest.approx(45), pytest.approx(45)]
    r = result.sent
    assert r.exhausted == 1 and r.submitted == 2
    assert r.waited == pytest.approx(sum(sleeps), abs=1.0), "waited follows the injected sleep"
    assert r.elapsed < r.waited
    assert "waiting for retries" in r.summary()


# 10. Several sending processes -------------------------------------------------------------------


def test_sending_processes_send_each_recipient_once(world) -> None:  # type: ignore[no-untyped-def]
    w = world(recipients=30, delivery={"provider": "outbox", "sessions": 2, "batch_size": 4})
    result = run(w, None)
    assert result.counts["submitted"] == 30 and result.sent.submitted == 30
    files = sorted(w.settings.outbox_path.rglob("*.eml"))
    recipients = Counter(
        parseaddr(email.message_from_bytes(f.read_bytes())["To"])[1] for f in files
    )
    assert recipients == Counter(w.emails)
    assert w.journal_files() == []
    assert w.store.edition(w.edition.id).status is EditionStatus.SENT  # type: ignore[union-attr]
