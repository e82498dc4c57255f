"""The store on a real SQLite file, migrated by Alembic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

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
def store(tmp_path: Path) -> Store:
    s = Store.open(f"sqlite:///{tmp_path / 'digest.db'}")
    yield s
    s.close()


def test_migrations_build_exactly_the_models(store: Store) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_migrate_twice_is_harmless(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'again.db'}"
    Store.open(url).close()
    s = Store.open(url)
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
    assert store.carried_article_ids("weekly") == set(ed.article_ids)
    assert store.carried_article_ids("weekly", except_edition=ed.id) == set()
    bigger = compose_edition(
        {"qiosk": items}, history=set(), settings=settings, digest_key="weekly", now=NOW
    )
    store.save_edition(bigger, now=NOW)
    loaded = store.edition(ed.id)
    assert loaded == bigger
    store.set_edition_status(ed.id, EditionStatus.SENT, now=NOW)
    with pytest.raises(PermanentError, match="only a draft"):
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
    store.mark_results(
        {
            rows[0].delivery_id: SendResult("k0", SendStatus.SUBMITTED, provider_id="p0"),
            rows[1].delivery_id: SendResult("k1", SendStatus.TRANSIENT, reason="451 later"),
            rows[2].delivery_id: SendResult("k2", SendStatus.PERMANENT, reason="550 no user"),
        },
        now=later,
    )
    # rows[3] stays in `sending`, as after a crash.
    counts = store.delivery_counts(eid)
    assert counts == {"pending": 0, "sending": 1, "submitted": 1, "failed": 2}
    assert store.release_stale(eid, now=later) == 1
    assert store.retry_failed(eid, now=later) == 1  # the transient one, not the permanent one
    again = store.claim_batch(eid, 10, now=later)
    assert {c.delivery_id for c in again} == {rows[1].delivery_id, rows[3].delivery_id}
    assert store.submitted_subscriber_ids(eid) == {rows[0].subscriber.id}
