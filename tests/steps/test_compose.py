"""The compose step over a real store: a period's edition is composed once, a draft takes new
articles, an editor's changes are kept and need approving again."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from digest.errors import PermanentError
from digest.models import (
    EditionAction,
    EditionStatus,
)
from digest.steps.compose import approve, compose, edit_edition, resolve_article
from digest.store import Store
from tests.conftest import article, draft_to
from tests.steps.world import NOW


def test_compose_keeps_approved_editions_and_frees_unapproved_ones(setup, make_settings) -> None:  # type: ignore[no-untyped-def]
    settings, store, edition = setup
    again = compose(settings, store, "weekly", now=NOW)
    assert again.status == "existing" and again.edition == edition
    # A draft left unapproved last week hides nothing from this week's edition.
    store.change_edition_status(edition.id, EditionAction.EDIT, now=NOW)
    later = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
    nxt = compose(settings, store, "weekly", now=later)
    assert nxt.edition is not None and set(nxt.edition.article_ids) == set(edition.article_ids)


def test_editor_changes_are_kept_and_need_approval_again(setup) -> None:  # type: ignore[no-untyped-def]

    settings, store, edition = setup
    assert edition.status is EditionStatus.APPROVED
    first = edition.article_ids[0]
    second = edition.article_ids[1]
    prefix = resolve_article(store, "weekly", settings, second)
    with pytest.raises(PermanentError, match="several"):
        resolve_article(store, "weekly", settings, second[:8])
    outcome = edit_edition(
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
    again = compose(settings, store, "weekly", now=NOW)
    assert again.edition is not None and first not in again.edition.article_ids
    assert again.edition.intro == "Hello **readers**"
    with pytest.raises(PermanentError, match="no article"):
        resolve_article(store, "weekly", settings, "zzzzzzzz")
    with pytest.raises(PermanentError, match="unknown"):
        edit_edition(settings, store, "weekly", {"section_order": ["sport"]}, now=NOW)
    draft_to(store, edition.id, EditionStatus.SENT, now=NOW)
    with pytest.raises(PermanentError, match="no longer be changed"):
        edit_edition(settings, store, "weekly", {"intro": "late"}, now=NOW)


def test_a_draft_takes_new_articles_an_approved_edition_does_not(make_settings, db_url) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings({"store": {"url": db_url}})
    store = Store.open(db_url)
    store.save_articles([article(1)], now=NOW)
    first = compose(settings, store, "weekly", now=NOW)
    assert first.status == "new" and first.edition is not None
    store.save_articles([article(2)], now=NOW)
    second = compose(settings, store, "weekly", now=NOW)
    assert second.status == "updated" and second.edition is not None
    assert second.edition.id == first.edition.id and len(second.edition.teasers) == 2
    assert compose(settings, store, "weekly", now=NOW).status == "unchanged"
    approve(store, second.edition, now=NOW)
    store.save_articles([article(3)], now=NOW)
    third = compose(settings, store, "weekly", now=NOW)
    assert third.status == "existing" and third.edition == second.edition.model_copy(
        update={"status": EditionStatus.APPROVED}
    )
    store.close()


def test_a_failed_edit_changes_nothing_and_braces_are_text(setup) -> None:  # type: ignore[no-untyped-def]

    settings, store, edition = setup
    with pytest.raises(PermanentError, match="nothing new"):
        edit_edition(settings, store, "weekly", {"excluded": list(edition.article_ids)}, now=NOW)
    kept = store.edition(edition.id)
    assert kept is not None and kept.article_ids == edition.article_ids
    assert kept.status is EditionStatus.APPROVED and store.overrides(edition.id).excluded == ()
    done = edit_edition(settings, store, "weekly", {"subject": "Save 50% {today"}, now=NOW)
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


def test_nothing_new_names_the_articles_max_age_days_left_out(make_settings, db_url) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings({"store": {"url": db_url}, "digests": {"weekly": {"max_age_days": 7}}})
    store = Store.open(db_url)
    now = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
    # Published November 2 to 4: gathered, but more than a week old on the 30th.
    store.save_articles([article(1), article(2), article(3)], now=now)
    outcome = compose(settings, store, "weekly", now=now)
    assert outcome.status == "nothing-new" and outcome.edition is None
    assert (
        "3 article(s) not carried yet were published before 2026-11-23 14:00 UTC, "
        "older than digests.weekly.max_age_days = 7"
    ) in outcome.message
    # Without the limit they make an edition; with nothing old, nothing is said of the limit.
    unlimited = make_settings({"store": {"url": db_url}})
    assert compose(unlimited, store, "weekly", now=now, record=False).status == "new"
    empty = Store.open(f"sqlite:///{settings.data_dir}/empty.db")
    quiet = compose(settings, empty, "weekly", now=now)
    assert quiet.status == "nothing-new" and "max_age_days" not in quiet.message
    empty.close()
    store.close()
