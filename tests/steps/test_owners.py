"""Several owners deliver one edition at once (shards of a fan-out): each row goes out once, a
live owner's rows are never touched, and a dead owner's rows are settled from its crash record
(answered ones recorded, not resent; the rest sent once) by whoever finds them."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from digest.delivery.base import OnResult
from digest.delivery.memory import MemoryProvider
from digest.errors import DeliveryLocked
from digest.models import DeliveryStatus, EditionStatus, OutgoingMessage, SendResult, SendStatus
from digest.render.variants import render_variants
from digest.steps.deliver import deliver
from digest.steps.ledger import (
    DeliveryReport,
    delivery_lock,
    finish_delivery,
    open_journal,
    prepare_delivery,
)
from digest.store import Store
from digest.store import schema as t
from digest.store.locks import claim_lock
from tests.steps.world import NOW, World


class SlowProvider(MemoryProvider):
    """The in-memory provider taking a little time per message, so that owners interleave;
    with a ``meet`` barrier, its first batch waits until every owner holds a batch."""

    def __init__(self, meet: threading.Barrier | None = None) -> None:
        super().__init__()
        self.meet = meet

    def send(
        self, messages: Sequence[OutgoingMessage], on_result: OnResult | None = None
    ) -> list[SendResult]:
        if self.meet is not None:
            meet, self.meet = self.meet, None
            meet.wait(timeout=30)
        time.sleep(0.002 * len(messages))
        return super().send(messages, on_result)


def _prepare(w: World) -> None:
    with delivery_lock(w.store, w.edition):
        prepare_delivery(w.settings, w.store, w.edition, now=NOW)


def _shard(w: World, owner: str, provider: Any, **kw: Any) -> DeliveryReport:
    """One owner's delivery beside others (a shard: no edition lease)."""
    edition = w.store.edition(w.edition.id)
    assert edition is not None
    variants = render_variants(w.settings, edition, w.store.section_choices())
    return deliver(
        w.settings,
        w.store,
        edition,
        variants,
        now=NOW,
        owner=owner,
        provider=provider,
        edition_lease=False,
        **kw,
    )


def _expire(store: Store, owner: str) -> None:
    """``owner``'s claim lease runs out (its heartbeat stopped: the machine died)."""
    with store.engine.begin() as c:
        c.execute(
            sa.update(t.locks)
            .where(t.locks.c.name == claim_lock(owner))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )


def _journal_rows(store: Store) -> int:
    with store.engine.connect() as c:
        return int(c.execute(sa.select(sa.func.count()).select_from(t.send_journal)).scalar_one())


def _claimed(w: World, owner: str, n: int) -> list[int]:
    """``owner`` takes its claim lease and claims ``n`` rows, as a shard does."""
    ttl = timedelta(seconds=w.settings.delivery.claim_ttl)
    w.store.acquire_lock(claim_lock(owner), owner, ttl=ttl)
    return [c.delivery_id for c in w.store.claim_batch(w.edition.id, n, now=NOW, owner=owner)]


def test_two_owners_drain_one_edition_together_each_row_once(world) -> None:  # type: ignore[no-untyped-def]
    w = world(recipients=60, delivery={"batch_size": 3})
    _prepare(w)
    # Both owners hold a batch at once (however the threads are scheduled), then drain on.
    meet = threading.Barrier(2)
    providers = {"shard-a": SlowProvider(meet), "shard-b": SlowProvider(meet)}
    reports: dict[str, DeliveryReport] = {}
    errors: list[BaseException] = []

    def run(owner: str) -> None:
        try:
            reports[owner] = _shard(w, owner, providers[owner])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(o,)) for o in providers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    sent = Counter(m.recipient for p in providers.values() for m in p.sent)
    assert sent == Counter(w.emails), "each recipient exactly once"
    assert all(p.sent for p in providers.values()), "both owners sent part of the edition"
    assert sum(r.submitted for r in reports.values()) == 60
    counts = finish_delivery(w.store, w.edition, now=NOW)
    assert counts["submitted"] == 60 and counts["sending"] == counts["pending"] == 0
    assert w.store.edition(w.edition.id).status is EditionStatus.SENT  # type: ignore[union-attr]
    assert _journal_rows(w.store) == 0 and w.journal_files() == []


def test_a_dead_owners_rows_are_settled_from_its_crash_record(world) -> None:  # type: ignore[no-untyped-def]
    w = world(recipients=8, delivery={"batch_size": 2, "claim_ttl": 5})
    _prepare(w)
    rows = _claimed(w, "ghost", 4)
    # The ghost's sending process had answers for two rows (journaled) when its machine died.
    journal = open_journal(w.settings, w.edition.id, "ghost")
    by_id = {r["id"]: e for e, r in w.ledger().items()}
    answered = {by_id[i] for i in rows[:2]}
    journal.write(rows[0], SendResult("k0", SendStatus.SUBMITTED, provider_id="ghost-0"))
    journal.write(rows[1], SendResult("k1", SendStatus.PERMANENT, reason="550 no", bounce=False))
    journal.close(remove=False)

    live = SlowProvider()
    first = _shard(w, "shard-b", live)
    # While the ghost's lease lives, its rows are its own: the other owner sends the rest only.
    assert first.submitted == 4 and first.recovered == 0
    assert w.store.sending_owners(w.edition.id) == {"ghost": 4}
    assert not answered & {m.recipient for m in live.sent}

    _expire(w.store, "ghost")
    second = _shard(w, "shard-b", live)
    # Recorded as the ghost would have: one submitted (recovered), one permanent; the two it
    # had not answered go out once, now.
    assert second.recovered == 1 and second.permanent == 1 and second.submitted == 2
    sent = Counter(m.recipient for m in live.sent)
    assert max(sent.values()) == 1 and not answered & set(sent)
    assert set(sent) == set(w.emails) - answered
    ledger = {r["id"]: r for r in w.ledger().values()}
    assert ledger[rows[0]]["status"] == "submitted"
    assert ledger[rows[0]]["provider_id"] == "ghost-0"
    assert ledger[rows[1]]["status"] == "failed" and ledger[rows[1]]["failure"] == "permanent"
    counts = finish_delivery(w.store, w.edition, now=NOW)
    assert counts["sending"] == counts["pending"] == 0 and counts["submitted"] == 7
    assert _journal_rows(w.store) == 0 and w.journal_files() == []

    # The ghost comes back (a long pause, not a death): its lease is gone, so it stops at its
    # next claim, and an answer it still records changes nothing.
    with pytest.raises(DeliveryLocked, match="lost"):
        w.store.renew_lock(claim_lock("ghost"), "ghost", ttl=timedelta(seconds=5))
    late = SendResult("k2", SendStatus.TRANSIENT, reason="late")
    w.store.mark_results({rows[2]: late}, now=NOW, owner="ghost")
    assert {r["id"]: r for r in w.ledger().values()}[rows[2]]["status"] == "submitted"


def test_a_live_owners_rows_are_never_taken(world) -> None:  # type: ignore[no-untyped-def]
    w = world(recipients=6, delivery={"batch_size": 2, "claim_ttl": 60})
    _prepare(w)
    rows = _claimed(w, "busy", 3)
    other = SlowProvider()
    report = _shard(w, "shard-b", other)
    assert report.submitted == 3 and report.recovered == 0
    assert w.store.sending_owners(w.edition.id) == {"busy": 3}
    # Nor does a new edition run's preparation take them (a shard of an earlier run).
    _prepare(w)
    assert w.store.sending_owners(w.edition.id) == {"busy": 3}
    counts = finish_delivery(w.store, w.edition, now=NOW)
    assert counts["sending"] == 3
    assert w.store.edition(w.edition.id).status is EditionStatus.SENDING  # type: ignore[union-attr]
    # Its answers, when they come, are recorded; then the edition is done, marked sent once.
    answers = {i: SendResult(f"k{i}", SendStatus.SUBMITTED, provider_id=f"p{i}") for i in rows}
    w.store.mark_results(answers, now=NOW, owner="busy")
    counts = finish_delivery(w.store, w.edition, now=NOW)
    assert counts["submitted"] == 6
    assert w.store.edition(w.edition.id).status is EditionStatus.SENT  # type: ignore[union-attr]
    assert Counter(m.recipient for m in other.sent).most_common(1)[0][1] == 1


def test_rows_claimed_by_a_dead_process_of_this_host_are_taken_at_once(world) -> None:  # type: ignore[no-untyped-def]
    import socket
    import subprocess

    w = world(recipients=4, delivery={"claim_ttl": 600})
    _prepare(w)
    gone = subprocess.Popen(["true"])
    gone.wait()
    owner = f"{socket.gethostname()}:{gone.pid}:deadbeef"
    _claimed(w, owner, 2)
    provider = MemoryProvider()
    report = _shard(w, "shard-b", provider)
    assert report.submitted == 4
    assert w.store.sending_owners(w.edition.id) == {}
    assert sorted(m.recipient for m in provider.sent) == sorted(w.emails)
    assert w.with_status(DeliveryStatus.SUBMITTED) == set(w.emails)


def test_finishing_forgets_the_journal_rows_a_dead_owner_left(world) -> None:  # type: ignore[no-untyped-def]
    w = world(recipients=4)
    _prepare(w)
    ids = _claimed(w, "gone:1", 4)
    # The owner journaled every answer and recorded all but the last in the ledger, then died
    # before forgetting them (its rows no longer `sending`: nobody would take them over).
    with w.store.engine.begin() as c:
        c.execute(
            sa.insert(t.send_journal),
            [
                {"owner": "gone:1", "delivery_id": i, "key": f"k{i}", "status": "submitted"}
                for i in ids
            ],
        )
    answers = {i: SendResult(f"k{i}", SendStatus.SUBMITTED, "id") for i in ids}
    w.store.mark_results({i: answers[i] for i in ids[:-1]}, now=NOW, owner="gone:1")
    # One row still in hand: its journal row may yet be needed, so all are kept.
    assert finish_delivery(w.store, w.edition, now=NOW)["sending"] == 1
    assert _journal_rows(w.store) == 4
    w.store.mark_results({ids[-1]: answers[ids[-1]]}, now=NOW, owner="gone:1")
    counts = finish_delivery(w.store, w.edition, now=NOW)
    assert counts["submitted"] == 4 and counts["sending"] == 0
    assert _journal_rows(w.store) == 0


def test_an_outage_keeps_a_few_hundred_failures_and_counts_every_one(world) -> None:  # type: ignore[no-untyped-def]
    from digest.steps.ledger import FAILURES_KEPT

    w = world(recipients=450, delivery={"batch_size": 50})
    _prepare(w)
    provider = MemoryProvider(fail=dict.fromkeys(w.emails, SendStatus.PERMANENT), keep=False)
    report = _shard(w, "run:1", provider)
    assert report.permanent == 450 and report.submitted == 0
    assert len(report.failures) == FAILURES_KEPT == 200
    assert report.failures_not_kept == 250
    assert len(set(report.failures)) == 200  # the first ones, each in full
    # Adding reports (a run's passes, the shards') keeps the cap; the counts stay exact.
    total = DeliveryReport(w.edition.id)
    total.add(report)
    total.add(report)
    assert (total.permanent, len(total.failures), total.failures_not_kept) == (900, 200, 700)
