"""Articles in the store: one row whatever the sources that carried it, read since a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from digest.store import Store
from tests.conftest import article

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_an_article_in_two_sources_is_stored_once(store: Store) -> None:
    a = article(1, source="qiosk")
    assert store.save_articles([a], now=NOW) == {a.id}
    assert store.save_articles([a.model_copy(update={"source": "analysis"})], now=NOW) == set()
    assert store.count_articles() == 1
    ((got, sources),) = store.articles_from_sources(["qiosk", "analysis"])
    assert got.source == "qiosk" and sources == {"qiosk", "analysis"}
    assert got.published.tzinfo is not None and got == a


def test_reading_articles_since_a_time_keeps_the_pinned_ones(store: Store) -> None:
    old, new = article(1), article(27)
    store.save_articles([old, new], now=NOW)
    since = new.published - timedelta(hours=1)
    assert [a.id for a, _ in store.articles_from_sources(["qiosk"], since=since)] == [new.id]
    both = store.articles_from_sources(["qiosk"], since=since, also=[old.id])
    assert {a.id for a, _ in both} == {old.id, new.id}
