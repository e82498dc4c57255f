"""Editions in the store: drafts change, sent ones do not; only approved or sent ones carry
their articles."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from digest.errors import PermanentError
from digest.models import EditionStatus
from digest.store import Store
from tests.conftest import article

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


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
