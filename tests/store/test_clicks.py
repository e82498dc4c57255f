"""Clicks in the store, on SQLite and PostgreSQL: counted per edition and article, a visitor's
repeat counted once a day, scanners apart, no count lost to concurrent writers, a summary once."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from digest.compose.editions import compose_edition
from digest.config import Settings
from digest.models import EditionAction
from digest.store import ClickRow, Store
from tests.conftest import article

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
DAY = NOW.date().isoformat()


def _sent(make_settings: Callable[..., Settings], store: Store) -> str:
    """A sent edition (its article ids do not matter here: clicks name their own)."""
    items = [article(1)]
    store.save_articles(items, now=NOW)
    edition = compose_edition(
        {"qiosk": items}, history=set(), settings=make_settings(), digest_key="weekly", now=NOW
    )
    store.save_edition(edition, now=NOW)
    for action in (EditionAction.APPROVE, EditionAction.START_SENDING, EditionAction.FINISH):
        store.change_edition_status(edition.id, action, now=NOW)
    return edition.id


def row(
    edition: str, article: str, visitor: str, *, counted: bool = True, day: str = DAY
) -> ClickRow:
    return ClickRow(edition, article, "qiosk", counted, visitor, day)


def test_clicks_count_once_per_visitor_and_link(
    make_settings: Callable[..., Settings], store: Store
) -> None:
    e = _sent(make_settings, store)
    batch = [row(e, "a", "v1"), row(e, "a", "v1"), row(e, "a", "v2"), row(e, "b", "v1b")]
    assert store.record_clicks(batch) == 3
    assert store.record_clicks([row(e, "a", "v1"), row(e, "a", "s", counted=False)]) == 0
    got = {c.article_id: (c.clicks, c.filtered) for c in store.click_counts(e)}
    assert got == {"a": (2, 1), "b": (1, 0)}
    assert [c.article_id for c in store.click_counts(e)] == ["a", "b"]  # most clicked first


def test_earlier_days_hashes_are_forgotten(
    make_settings: Callable[..., Settings], store: Store
) -> None:
    e = _sent(make_settings, store)
    store.record_clicks([row(e, "a", "v1")])
    tomorrow = (NOW + timedelta(days=1)).date().isoformat()
    store.record_clicks([row(e, "a", "v1", day=tomorrow)], forget_before=tomorrow)
    with store.engine.connect() as c:
        days = c.execute(sa.text("SELECT day FROM click_visitors")).scalars().all()
    assert days == [tomorrow]


def test_concurrent_writers_lose_no_count(
    make_settings: Callable[..., Settings], store: Store
) -> None:
    e = _sent(make_settings, store)

    def write(n: int) -> int:
        return store.record_clicks([row(e, "a", f"v{n}-{i}") for i in range(5)])

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sum(pool.map(write, range(40))) == 200
    assert [(c.clicks, c.filtered) for c in store.click_counts(e)] == [(200, 0)]


def test_a_summary_is_made_once_for_a_sent_edition(
    make_settings: Callable[..., Settings], store: Store
) -> None:
    e = _sent(make_settings, store)
    assert store.editions_without_click_summary(NOW - timedelta(seconds=1)) == []
    assert store.editions_without_click_summary(NOW) == [e]
    assert store.mark_click_summary(e, NOW)
    assert not store.mark_click_summary(e, NOW)
    assert store.editions_without_click_summary(NOW + timedelta(days=2)) == []
