"""The pipeline's steps over a real SQLite store, with the in-memory provider at the port."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from digest import deliver, jobs
from digest.delivery.memory import MemoryProvider
from digest.errors import DeliveryLocked, TransientDeliveryError
from digest.models import EditionStatus, NewSubscriber, SubscriberStatus
from digest.store import Store
from tests.conftest import article

NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)


@pytest.fixture
def setup(make_settings, db_url: str):  # type: ignore[no-untyped-def]
    settings = make_settings(
        {"delivery": {"batch_size": 2, "retry": {"wait": 0}}, "store": {"url": db_url}}
    )
    store = Store.open(settings.database_url)
    store.save_articles(
        [article(1), article(2), article(3, source="analysis", categories=("Europe",))], now=NOW
    )
    store.import_subscribers(
        [
            NewSubscriber(email="all@example.org", name="All"),
            NewSubscriber(email="q@example.org", sections=frozenset({"qiosk"})),
            NewSubscriber(email="dw@example.org", sections=frozenset({"diplomacy-watch"})),
            NewSubscriber(email="a@example.org", sections=frozenset({"analysis"})),
        ],
        now=NOW,
    )
    outcome = jobs.compose(settings, store, "weekly", now=NOW)
    assert outcome.edition is not None
    edition = jobs.approve(store, outcome.edition, now=NOW)
    yield settings, store, edition
    store.close()


def deliver_all(settings, store, edition, provider, variants=None, at=NOW, **kw):  # type: ignore[no-untyped-def]
    variants = (
        variants
        if variants is not None
        else deliver.render_variants(settings, edition, store.section_choices())
    )
    total = deliver.DeliveryReport(edition.id)
    with deliver.delivery_lock(store, edition) as owner:
        total.add(
            deliver.prepare_delivery(settings, store, edition, store.active_subscribers(), now=at)
        )
        total.add(
            deliver.deliver(
                settings, store, edition, variants, now=at, owner=owner, provider=provider, **kw
            )
        )
        counts = deliver.finish_delivery(store, edition, now=at)
    return total, counts


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
    variants = deliver.render_variants(settings, edition, [s.sections for s in subs])
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


def test_a_second_run_of_the_same_edition_is_refused(setup) -> None:  # type: ignore[no-untyped-def]
    settings, store, edition = setup
    with deliver.delivery_lock(store, edition), pytest.raises(DeliveryLocked, match=edition.id):
        deliver_all(settings, store, edition, MemoryProvider())


def test_compose_keeps_approved_editions_and_frees_unapproved_ones(setup, make_settings) -> None:  # type: ignore[no-untyped-def]
    settings, store, edition = setup
    again = jobs.compose(settings, store, "weekly", now=NOW)
    assert again.status == "existing" and again.edition == edition
    # A draft left unapproved last week hides nothing from this week's edition.
    store.set_edition_status(edition.id, EditionStatus.DRAFT, now=NOW)
    later = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
    nxt = jobs.compose(settings, store, "weekly", now=later)
    assert nxt.edition is not None and set(nxt.edition.article_ids) == set(edition.article_ids)


def test_editor_changes_are_kept_and_need_approval_again(setup) -> None:  # type: ignore[no-untyped-def]
    from digest.errors import PermanentError

    settings, store, edition = setup
    assert edition.status is EditionStatus.APPROVED
    first = edition.article_ids[0]
    second = edition.article_ids[1]
    prefix = jobs.resolve_article(store, "weekly", settings, second)
    with pytest.raises(PermanentError, match="several"):
        jobs.resolve_article(store, "weekly", settings, second[:8])
    outcome = jobs.edit_edition(
        settings,
        store,
        "weekly",
        {"intro": "Hello **readers**", "excluded": [first], "pinned": [prefix]},
        now=NOW,
    )
    edited = outcome.edition
    assert edited is not None and edited.status is EditionStatus.DRAFT
    assert first not in edited.article_ids and edited.intro == "Hello **readers**"
    assert store.overrides(edition.id).excluded == (first,)
    # A later run recomposes the draft and keeps the editor's changes.
    again = jobs.compose(settings, store, "weekly", now=NOW)
    assert again.edition is not None and first not in again.edition.article_ids
    assert again.edition.intro == "Hello **readers**"
    with pytest.raises(PermanentError, match="no article"):
        jobs.resolve_article(store, "weekly", settings, "zzzzzzzz")
    with pytest.raises(PermanentError, match="unknown"):
        jobs.edit_edition(settings, store, "weekly", {"section_order": ["sport"]}, now=NOW)
    store.set_edition_status(edition.id, EditionStatus.SENT, now=NOW)
    with pytest.raises(PermanentError, match="no longer be changed"):
        jobs.edit_edition(settings, store, "weekly", {"intro": "late"}, now=NOW)


def test_a_draft_takes_new_articles_an_approved_edition_does_not(make_settings, db_url) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings({"store": {"url": db_url}})
    store = Store.open(db_url)
    store.save_articles([article(1)], now=NOW)
    first = jobs.compose(settings, store, "weekly", now=NOW)
    assert first.status == "new" and first.edition is not None
    store.save_articles([article(2)], now=NOW)
    second = jobs.compose(settings, store, "weekly", now=NOW)
    assert second.status == "updated" and second.edition is not None
    assert second.edition.id == first.edition.id and len(second.edition.teasers) == 2
    assert jobs.compose(settings, store, "weekly", now=NOW).status == "unchanged"
    jobs.approve(store, second.edition, now=NOW)
    store.save_articles([article(3)], now=NOW)
    third = jobs.compose(settings, store, "weekly", now=NOW)
    assert third.status == "existing" and third.edition == second.edition.model_copy(
        update={"status": EditionStatus.APPROVED}
    )
    store.close()


def test_a_failed_edit_changes_nothing_and_braces_are_text(setup) -> None:  # type: ignore[no-untyped-def]
    from digest.errors import PermanentError

    settings, store, edition = setup
    with pytest.raises(PermanentError, match="nothing new"):
        jobs.edit_edition(
            settings, store, "weekly", {"excluded": list(edition.article_ids)}, now=NOW
        )
    kept = store.edition(edition.id)
    assert kept is not None and kept.article_ids == edition.article_ids
    assert kept.status is EditionStatus.APPROVED and store.overrides(edition.id).excluded == ()
    done = jobs.edit_edition(settings, store, "weekly", {"subject": "Save 50% {today"}, now=NOW)
    assert done.edition is not None and done.edition.subject == "Save 50% {today"


def test_pins_never_break_the_caps(make_settings) -> None:  # type: ignore[no-untyped-def]
    from digest.compose.editions import compose_edition
    from digest.models import Overrides

    settings = make_settings(
        {"digests": {"weekly": {"max_per_section": 2, "max_items": 2, "cards_per_section": 1}}}
    )
    items = [article(n) for n in range(1, 6)]
    edition = compose_edition(
        {"qiosk": items},
        history=set(),
        settings=settings,
        digest_key="weekly",
        now=NOW,
        overrides=Overrides(pinned=tuple(a.id for a in items[:3])),
    )
    assert edition.article_ids == tuple(a.id for a in items[:2])


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
    real = deliver.render_variant

    def counting(edition, settings, sections=None):  # type: ignore[no-untyped-def]
        calls.append(sections)
        return real(edition, settings, sections=sections)

    monkeypatch.setattr(deliver, "render_variant", counting)
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
