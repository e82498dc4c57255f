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


def test_saving_feeds_of_any_length_makes_few_distinct_statements(store: Store) -> None:
    """A many-row INSERT is a distinct statement for each number of rows, and SQLite's driver
    keeps each one prepared (a 500-row one is about 1.5 MB): feeds of every length from 1 to
    300 items must not make 300 of them."""
    import sqlalchemy as sa

    texts: set[str] = set()

    def seen(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("INSERT"):
            texts.add(statement)

    sa.event.listen(store.engine, "before_cursor_execute", seen)
    try:
        n = 0
        for length in range(1, 301, 7):
            store.save_articles([article(n + i) for i in range(length)], now=NOW)
            n += length
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", seen)
    assert store.count_articles() == n
    # Chunks of 128, 64, ... 1 rows: at most eight shapes for each of the two tables.
    assert 2 <= len(texts) <= 16, len(texts)
