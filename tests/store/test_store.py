"""The store on a real SQLite file, migrated by Alembic."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from digest.errors import PermanentError
from digest.models import (
    EditionStatus,
    NewSubscriber,
    SendResult,
    SendStatus,
    SubscriberStatus,
)
from digest.store import Store
from digest.store.schema import metadata
from tests.conftest import article

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store.open(db_url)
    yield s
    s.close()


def test_migrations_build_exactly_the_models(store: Store) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_migrate_twice_is_harmless(db_url: str) -> None:
    Store.open(db_url).close()
    s = Store.open(db_url)
    s.migrate()  # open() checks once per process; run the check again on purpose
    assert s.count_articles() == 0
    s.close()


def test_source_validators_and_failures(store: Store) -> None:
    store.record_fetch_success("qiosk", "https://x/feed", etag='"v1"', last_modified=None, now=NOW)
    assert store.record_fetch_failure("qiosk", "https://x/feed", error="HTTP 500", now=NOW) == 1
    assert store.record_fetch_failure("qiosk", "https://x/feed", error="HTTP 500", now=NOW) == 2
    state = store.source_state("qiosk")
    assert state is not None
    assert state.etag == '"v1"' and state.consecutive_failures == 2 and state.last_error
    assert state.last_success_at == NOW
    store.record_fetch_success("qiosk", "https://x/feed", etag='"v2"', last_modified=None, now=NOW)
    state = store.source_state("qiosk")
    assert state is not None and state.consecutive_failures == 0 and state.last_error is None


def test_an_article_in_two_sources_is_stored_once(store: Store) -> None:
    a = article(1, source="qiosk")
    assert store.save_articles([a], now=NOW) == {a.id}
    assert store.save_articles([a.model_copy(update={"source": "analysis"})], now=NOW) == set()
    assert store.count_articles() == 1
    ((got, sources),) = store.articles_from_sources(["qiosk", "analysis"])
    assert got.source == "qiosk" and sources == {"qiosk", "analysis"}
    assert got.published.tzinfo is not None and got == a


def test_editions_drafts_change_sent_ones_do_not(make_settings, store: Store) -> None:  # type: ignore[no-untyped-def]
    from digest.compose.editions import compose_edition

    settings = make_settings()
    items = [article(n) for n in range(1, 4)]
    store.save_articles(items, now=NOW)
    ed = compose_edition(
        {"qiosk": items[:2]}, history=set(), settings=settings, digest_key="weekly", now=NOW
    )
    store.save_edition(ed, now=NOW)
    # A draft nobody approved carries nothing: its articles stay free for later editions.
    assert store.carried_article_ids("weekly") == set()
    store.set_edition_status(ed.id, EditionStatus.APPROVED, now=NOW)
    assert store.carried_article_ids("weekly") == set(ed.article_ids)
    assert store.carried_article_ids("weekly", except_edition=ed.id) == set()
    store.set_edition_status(ed.id, EditionStatus.DRAFT, now=NOW)
    bigger = compose_edition(
        {"qiosk": items}, history=set(), settings=settings, digest_key="weekly", now=NOW
    )
    store.save_edition(bigger, now=NOW)
    loaded = store.edition(ed.id)
    assert loaded == bigger
    store.set_edition_status(ed.id, EditionStatus.SENT, now=NOW)
    with pytest.raises(PermanentError, match="no longer be changed"):
        store.save_edition(ed, now=NOW)
    store.set_edition_status(ed.id, EditionStatus.REJECTED, now=NOW)
    assert store.carried_article_ids("weekly") == set()


def test_import_never_resubscribes(store: Store) -> None:
    people = [NewSubscriber(email="a@example.org", name="A"), NewSubscriber(email="b@example.org")]
    counts = store.import_subscribers(people, now=NOW)
    assert (counts.added, counts.updated) == (2, 0)
    a = store.active_subscribers()[0]
    store.set_subscriber_status(a.id, SubscriberStatus.UNSUBSCRIBED, now=NOW)
    counts = store.import_subscribers(
        [
            NewSubscriber(email="A@example.org", name="A"),
            NewSubscriber(email="b@example.org", name="Bee", sections=frozenset({"qiosk"})),
        ],
        now=NOW,
    )
    assert (counts.added, counts.updated, counts.kept_unsubscribed) == (0, 1, 1)
    (b,) = store.active_subscribers()
    assert b.email == "b@example.org" and b.name == "Bee" and b.sections == {"qiosk"}


def _edition_with_subscribers(make_settings, store: Store, n: int) -> str:  # type: ignore[no-untyped-def]
    from digest.compose.editions import compose_edition

    items = [article(1)]
    store.save_articles(items, now=NOW)
    ed = compose_edition(
        {"qiosk": items}, history=set(), settings=make_settings(), digest_key="weekly", now=NOW
    )
    store.save_edition(ed, now=NOW)
    store.import_subscribers([NewSubscriber(email=f"s{i}@example.org") for i in range(n)], now=NOW)
    return ed.id


def test_ledger_rows_are_unique_and_claims_exclusive(make_settings, store: Store) -> None:  # type: ignore[no-untyped-def]
    eid = _edition_with_subscribers(make_settings, store, 5)
    ids = [s.id for s in store.active_subscribers()]
    assert store.create_deliveries(eid, ids, now=NOW) == 5
    assert store.create_deliveries(eid, ids + ids, now=NOW) == 0
    first = store.claim_batch(eid, 3, now=NOW)
    second = store.claim_batch(eid, 3, now=NOW)
    assert len(first) == 3 and len(second) == 2
    assert not {c.delivery_id for c in first} & {c.delivery_id for c in second}
    assert store.claim_batch(eid, 3, now=NOW) == []
    assert store.delivery_counts(eid)["sending"] == 5


def test_results_and_rerun_rules(make_settings, store: Store) -> None:  # type: ignore[no-untyped-def]
    eid = _edition_with_subscribers(make_settings, store, 4)
    store.create_deliveries(eid, [s.id for s in store.active_subscribers()], now=NOW)
    rows = store.claim_batch(eid, 10, now=NOW)
    later = NOW + timedelta(minutes=1)
    retry_at = later + timedelta(minutes=5)
    suppressed = store.mark_results(
        {
            rows[0].delivery_id: SendResult("k0", SendStatus.SUBMITTED, provider_id="p0"),
            rows[1].delivery_id: SendResult("k1", SendStatus.TRANSIENT, reason="451 later"),
            rows[2].delivery_id: SendResult(
                "k2", SendStatus.PERMANENT, reason="550 5.1.1 no user", bounce=True
            ),
        },
        now=later,
        retry_at={rows[1].delivery_id: retry_at},
    )
    # rows[3] stays in `sending`, as after a crash.
    counts = store.delivery_counts(eid)
    assert counts == {
        "pending": 0,
        "sending": 1,
        "submitted": 1,
        "failed": 2,
        "skipped": 0,
        "transient": 1,
        "permanent": 1,
        "exhausted": 0,
    }
    # The hard bounce suppressed its subscriber, with the reason in the audit trail.
    bounced = rows[2].subscriber.id
    assert suppressed == [bounced]
    assert bounced not in {s.id for s in store.active_subscribers()}
    added, event = store.subscriber_events(bounced)
    assert (added["old_status"], added["new_status"]) == (None, "active")  # the import
    assert (event["old_status"], event["new_status"]) == ("active", "bounced")
    assert "550 5.1.1 no user" in event["cause"]
    # A late answer for a row no longer `sending` changes nothing.
    store.mark_results({rows[0].delivery_id: SendResult("k0", SendStatus.TRANSIENT)}, now=later)
    assert store.delivery_counts(eid)["submitted"] == 1

    assert store.release_stale(eid, now=later) == 1
    assert store.next_retry_at(eid) == retry_at
    assert store.requeue_due(eid, now=later) == 0  # not due yet
    assert store.requeue_due(eid, now=retry_at) == 1  # the transient one, not the permanent one
    again = store.claim_batch(eid, 10, now=retry_at)
    assert {c.delivery_id for c in again} == {rows[1].delivery_id, rows[3].delivery_id}
    assert {c.attempts for c in again} == {2}
    assert store.submitted_subscriber_ids(eid) == {rows[0].subscriber.id}


def test_concurrent_claimers_never_share_a_row(make_settings, db_url: str) -> None:  # type: ignore[no-untyped-def]
    import threading

    url = db_url
    setup = Store.open(url)
    eid = _edition_with_subscribers(make_settings, setup, 120)
    setup.create_deliveries(eid, [s.id for s in setup.active_subscribers()], now=NOW)
    claimed: list[list[int]] = [[] for _ in range(4)]

    def worker(i: int) -> None:
        store = Store.open(url, migrate=False)
        while rows := store.claim_batch(eid, 3, now=NOW):
            claimed[i].extend(r.delivery_id for r in rows)
        store.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    every = [d for part in claimed for d in part]
    assert len(every) == len(set(every)) == 120
    setup.close()


def test_unsent_rows_of_people_who_left_are_skipped(make_settings, store: Store) -> None:  # type: ignore[no-untyped-def]
    eid = _edition_with_subscribers(make_settings, store, 3)
    a, b, c = store.active_subscribers()
    store.create_deliveries(eid, [a.id, b.id, c.id], now=NOW)
    store.set_subscriber_status(b.id, SubscriberStatus.UNSUBSCRIBED, now=NOW)
    # Even before the ledger is tidied, a claim never picks an inactive subscriber.
    assert {r.subscriber.id for r in store.claim_batch(eid, 10, now=NOW)} == {a.id, c.id}
    assert store.skip_inactive(eid, now=NOW) == 1
    assert store.delivery_counts(eid)["skipped"] == 1


def test_locks_exclude_a_second_holder_and_recover_from_crashes(store: Store) -> None:
    from digest.errors import DeliveryLocked

    ttl = timedelta(minutes=5)
    store.acquire_lock("deliver:x", "me", ttl=ttl)
    store.acquire_lock("deliver:x", "me", ttl=ttl)  # re-entrant for the same owner
    with pytest.raises(DeliveryLocked, match="another run"):
        store.acquire_lock("deliver:x", "someone-else", ttl=ttl)
    # An expired lease is taken over; the old holder then learns it lost it.
    store.release_lock("deliver:x", "me")
    store.acquire_lock("deliver:x", "old", ttl=timedelta(seconds=-1))
    store.acquire_lock("deliver:x", "new", ttl=ttl)
    with pytest.raises(DeliveryLocked, match="lost"):
        store.renew_lock("deliver:x", "old", ttl=ttl)
    store.renew_lock("deliver:x", "new", ttl=ttl)


def test_a_dead_process_on_this_host_does_not_hold_a_lock(store: Store) -> None:
    import socket
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    owner = f"{socket.gethostname()}:{dead.stdout.strip()}:abcd"
    store.acquire_lock("deliver:y", owner, ttl=timedelta(hours=1))
    store.acquire_lock("deliver:y", "survivor", ttl=timedelta(hours=1))


def test_reading_articles_since_a_time_keeps_the_pinned_ones(store: Store) -> None:
    old, new = article(1), article(27)
    store.save_articles([old, new], now=NOW)
    since = new.published - timedelta(hours=1)
    assert [a.id for a, _ in store.articles_from_sources(["qiosk"], since=since)] == [new.id]
    both = store.articles_from_sources(["qiosk"], since=since, also=[old.id])
    assert {a.id for a, _ in both} == {old.id, new.id}
