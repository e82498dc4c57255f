"""Delivering an edition over a real store, the in-memory provider at the port: each subscriber
gets their variant once, transient failures are retried with backoff, the run reports its
counts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest

from digest.delivery.base import OnResult, ProviderBase, report, submitted, transient
from digest.delivery.memory import MemoryProvider
from digest.errors import TransientDeliveryError
from digest.models import (
    EditionStatus,
    NewSubscriber,
    OutgoingMessage,
    SendResult,
    SendStatus,
    SubscriberStatus,
)
from digest.render import variants as rendering
from digest.render.variants import render_variants
from tests.steps.world import NOW, deliver_all, run


def test_each_subscriber_gets_their_variant_once(setup) -> None:  # type: ignore[no-untyped-def]
    settings, store, edition = setup
    provider = MemoryProvider()
    total, counts = deliver_all(settings, store, edition, provider)
    # dw@ chose only Diplomacy Watch, which has no news this week: no email, no row.
    assert sorted(m.recipient for m in provider.sent) == [
        "a@example.org",
        "all@example.org",
        "q@example.org",
    ]
    assert total.skipped == 1 and counts["submitted"] == 3
    q = next(m for m in provider.sent if m.recipient == "q@example.org")
    assert "Item 1" in q.text and "Item 3" not in q.text
    assert store.edition(edition.id).status is EditionStatus.SENT  # type: ignore[union-attr]
    again, _ = deliver_all(settings, store, edition, provider)
    assert again.submitted == 0 and len(provider.sent) == 3


def test_people_who_leave_mid_run_are_not_mailed(setup) -> None:  # type: ignore[no-untyped-def]
    settings, store, edition = setup
    provider = MemoryProvider(down=True)
    with pytest.raises(TransientDeliveryError):
        deliver_all(settings, store, edition, provider)
    # The batch was given back; the ledger says nothing was sent.
    counts = store.delivery_counts(edition.id)
    assert counts["pending"] == 3 and counts["sending"] == 0
    leaver = next(s for s in store.active_subscribers() if s.email == "all@example.org")
    store.set_subscriber_status(leaver.id, SubscriberStatus.UNSUBSCRIBED, now=NOW)
    provider.down = False
    _, counts = deliver_all(settings, store, edition, provider)
    assert "all@example.org" not in {m.recipient for m in provider.sent}
    assert counts["skipped"] == 1 and counts["submitted"] == 2


def test_changed_preferences_never_strand_a_batch(setup) -> None:  # type: ignore[no-untyped-def]
    settings, store, edition = setup
    subs = store.active_subscribers()
    store.create_deliveries(edition.id, [s.id for s in subs], now=NOW)
    # Variants were compiled before two subscribers changed their sections.
    variants = render_variants(settings, edition, [s.sections for s in subs])
    store.import_subscribers(
        [
            NewSubscriber(email="q@example.org", sections=frozenset({"analysis", "qiosk"})),
            NewSubscriber(email="a@example.org", sections=frozenset({"diplomacy-watch"})),
        ],
        now=NOW,
    )
    provider = MemoryProvider()
    _, counts = deliver_all(settings, store, edition, provider, variants)
    assert counts["sending"] == counts["pending"] == 0
    assert {m.recipient for m in provider.sent} == {"all@example.org", "q@example.org"}
    assert counts["skipped"] == 2  # dw@ and a@ chose sections without news


def test_transient_failures_keep_the_edition_open(setup) -> None:  # type: ignore[no-untyped-def]
    from digest.models import SendStatus

    settings, store, edition = setup
    provider = MemoryProvider(fail={"q@example.org": SendStatus.TRANSIENT})
    total, counts = deliver_all(settings, store, edition, provider)
    assert total.transient == 1 and counts["transient"] == 1
    assert store.edition(edition.id).status is EditionStatus.SENDING  # type: ignore[union-attr]
    provider.fail = {}
    # A re-run before the retry is due sends nothing; one after it does.
    early, counts = deliver_all(settings, store, edition, provider)
    assert early.submitted == 0 and counts["transient"] == 1
    later = NOW + timedelta(hours=2)
    again, counts = deliver_all(settings, store, edition, provider, at=later)
    assert again.submitted == 1 and counts["transient"] == 0
    assert [m.recipient for m in provider.sent].count("q@example.org") == 1
    assert store.edition(edition.id).status is EditionStatus.SENT  # type: ignore[union-attr]


def test_a_run_waits_for_retries_with_backoff_then_gives_up(setup) -> None:  # type: ignore[no-untyped-def]
    from digest.models import SendStatus

    settings, store, edition = setup
    retry = {"attempts": 4, "base_delay": 10, "max_delay": 15, "wait": 600}
    settings = settings.model_copy(
        update={
            "delivery": settings.delivery.model_copy(
                update={"retry": settings.delivery.retry.model_copy(update=retry)}
            )
        }
    )
    provider = MemoryProvider(fail={"q@example.org": SendStatus.TRANSIENT})
    clock = [NOW]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock[0] += timedelta(seconds=seconds)

    total, counts = deliver_all(
        settings, store, edition, provider, clock=lambda: clock[0], sleep=sleep
    )
    # Four tries in all: three waits, each within its jittered ceiling (10, then 15 capped).
    assert len(waits) == 3 and 0 <= waits[0] <= 10 and all(0 <= w <= 15 for w in waits)
    assert counts["exhausted"] == 1 and counts["transient"] == 0
    assert total.exhausted == 1 and "out of attempts after 4" in " ".join(total.failures)
    # Out of attempts does not hold the edition open, and is not lost: an operator requeues it.
    assert store.edition(edition.id).status is EditionStatus.SENT  # type: ignore[union-attr]
    provider.fail = {}
    assert store.requeue_exhausted(edition.id, now=NOW) == 1
    again, counts = deliver_all(settings, store, edition, provider)
    assert again.submitted == 1 and counts["exhausted"] == 0, counts
    assert [m.recipient for m in provider.sent].count("q@example.org") == 1


def test_variants_are_rendered_once_per_section_set(setup, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Thirty subscribers with three distinct choices: three renders (plus the full edition),
    not thirty; each subscriber gets the variant of their own set."""
    settings, store, edition = setup
    store.import_subscribers(
        [
            NewSubscriber(email=f"set{i}@example.org", sections=choice)
            for i, choice in enumerate(
                [frozenset({"qiosk"}), frozenset({"analysis"}), frozenset({"qiosk", "analysis"})]
                * 10
            )
        ],
        now=NOW,
    )
    calls: list[frozenset[str] | None] = []
    real = rendering.render_variant

    def counting(edition, settings, sections=None):  # type: ignore[no-untyped-def]
        calls.append(sections)
        return real(edition, settings, sections=sections)

    monkeypatch.setattr(rendering, "render_variant", counting)
    provider = MemoryProvider()
    deliver_all(settings, store, edition, provider)
    # Sets are cut to the sections this edition has; {qiosk, analysis} is the whole edition.
    assert sorted(map(str, calls)) == sorted(
        map(str, [None, frozenset({"qiosk"}), frozenset({"analysis"})])
    )
    by_address = {m.recipient: m for m in provider.sent}
    only_q = by_address["set0@example.org"].text
    only_a = by_address["set1@example.org"].text
    assert "Item 1" in only_q and "Item 3" not in only_q
    assert "Item 3" in only_a and "Item 1" not in only_a
    both = by_address["set2@example.org"].text
    assert "Item 1" in both and "Item 3" in both


# The run report ------------------------------------------------------------------------------


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


def test_delivery_tells_its_progress_hook_after_each_batch(world) -> None:  # type: ignore[no-untyped-def]
    from digest.steps.progress import Progress

    w = world(recipients=5, delivery={"batch_size": 2, "retry": {"attempts": 1, "wait": 0}})
    provider = MemoryProvider(fail={w.emails[0]: SendStatus.PERMANENT})
    events: list[Progress] = []
    run(w, provider, progress=events.append)
    task = f"deliver {w.edition.id}"
    assert [(e.task, e.done, e.total) for e in events] == [
        (task, 2, 5),
        (task, 4, 5),
        (task, 5, 5),
    ]
    assert events[-1].failed == 1
