"""Fixtures of the steps' tests: a small publication over a real store (SQLite and
PostgreSQL) with an approved edition."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from digest.models import NewSubscriber
from digest.steps.compose import approve, compose
from digest.store import Store
from tests.conftest import article
from tests.steps.world import NOW, World, merge


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
    outcome = compose(settings, store, "weekly", now=NOW)
    assert outcome.edition is not None
    edition = approve(store, outcome.edition, now=NOW)
    yield settings, store, edition
    store.close()


@pytest.fixture
def world(make_settings, db_url: str) -> Iterator[Callable[..., World]]:  # type: ignore[no-untyped-def]
    """Builds an approved edition with ``recipients`` subscribers who take every section."""
    stores: list[Store] = []

    def build(recipients: int = 3, delivery: dict[str, Any] | None = None) -> World:
        options = merge({"retry": {"wait": 0}}, delivery or {})
        settings = make_settings({"delivery": options, "store": {"url": db_url}})
        store = Store.open(settings.database_url)
        stores.append(store)
        store.save_articles(
            [article(1), article(2), article(3, source="analysis", categories=("Europe",))],
            now=NOW,
        )
        emails = [f"r{i:02d}@example.org" for i in range(recipients)]
        store.import_subscribers([NewSubscriber(email=e) for e in emails], now=NOW)
        outcome = compose(settings, store, "weekly", now=NOW)
        assert outcome.edition is not None
        edition = approve(store, outcome.edition, now=NOW)
        return World(settings, store, edition, emails)

    yield build
    for store in stores:
        store.close()
