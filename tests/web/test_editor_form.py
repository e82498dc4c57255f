"""The edition page's edit form (``digest.web.editing``): everything ``digest edition edit``
changes (subject, preheader, intro, pins, exclusions, the sections' order), saved through the
same step, shown in the preview and the page's subject and preheader lines; every mistake said
on the page (400), nothing stored."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from digest.models import Edition, Overrides
from digest.store import Store
from tests.conftest import article
from tests.web.conftest import Clock
from tests.web.test_editor import (
    ARTICLES,
    app,
    edition,
    editor,
    make_app,
    settings,
)

__all__ = ["app", "edition", "editor", "make_app", "settings"]


def _edit(editor: TestClient, edition: Edition, **data: Any) -> Any:
    return editor.post(f"/editions/{edition.id}/edit", data=data, follow_redirects=False)


def _saved(r: Any, edition: Edition) -> None:
    assert r.status_code == 303, r.text[-2000:]
    assert r.headers["location"] == f"/editions/{edition.id}?note=edited"


def _refused(r: Any, store: Store, edition: Edition, said: str) -> None:
    assert r.status_code == 400
    assert 'role="alert"' in r.text and said in r.text, r.text[-3000:]
    assert "Traceback" not in r.text
    assert store.overrides(edition.id) == Overrides()


def _order(html: str, *words: str) -> list[int]:
    return [html.index(w) for w in words]


def test_the_form_shows_every_field(editor: TestClient, edition: Edition) -> None:
    page = editor.get(f"/editions/{edition.id}").text
    assert f'name="subject" value="{edition.subject}"' in page
    assert f'name="preheader" value="{edition.preheader}"' in page
    assert 'name="intro"' in page and 'name="pin_ref"' in page
    for a in ARTICLES:
        assert f'name="pin" value="{a.id}"' in page and f'name="exclude" value="{a.id}"' in page
    for n, key in enumerate(("diplomacy-watch", "qiosk", "analysis"), 1):
        assert f'name="position.{key}" value="{n}"' in page


def test_subject(editor: TestClient, edition: Edition, store: Store) -> None:
    _saved(_edit(editor, edition, subject="  Ceasefire   week "), edition)
    assert store.overrides(edition.id).subject == "Ceasefire week"
    page = editor.get(f"/editions/{edition.id}").text
    assert "<h1>Ceasefire week</h1>" in page
    assert "<title>Ceasefire week</title>" in editor.get(f"/editions/{edition.id}/html").text
    saved = store.edition(edition.id)
    assert saved is not None and saved.subject == "Ceasefire week"
    # Back to the digest's template.
    _saved(_edit(editor, edition, subject="Ceasefire week", default="subject"), edition)
    assert store.overrides(edition.id).subject == ""
    assert f"<h1>{edition.subject}</h1>" in editor.get(f"/editions/{edition.id}").text


def test_an_empty_or_long_subject_is_refused_on_the_page(
    editor: TestClient, edition: Edition, store: Store
) -> None:
    _refused(_edit(editor, edition, subject="   "), store, edition, "The subject is empty")
    _refused(_edit(editor, edition, subject="x" * 121), store, edition, "longer than 120")
    _refused(_edit(editor, edition, preheader=""), store, edition, "The preheader is empty")


def test_an_unchanged_subject_keeps_following_the_template(
    editor: TestClient, edition: Edition, store: Store
) -> None:
    r = _edit(editor, edition, subject=edition.subject, preheader=edition.preheader, intro="Hi")
    _saved(r, edition)
    overrides = store.overrides(edition.id)
    assert (overrides.subject, overrides.preheader, overrides.intro) == ("", "", "Hi")
    # The same form again asks for nothing: the edition is not touched.
    r = _edit(editor, edition, subject=edition.subject, preheader=edition.preheader, intro="Hi")
    assert r.headers["location"] == f"/editions/{edition.id}?note=unchanged"
    assert "Nothing to save" in editor.get(r.headers["location"]).text


def test_preheader(editor: TestClient, edition: Edition, store: Store) -> None:
    _saved(_edit(editor, edition, preheader="Talks resume in Doha"), edition)
    assert store.overrides(edition.id).preheader == "Talks resume in Doha"
    assert '<p class="muted">Talks resume in Doha</p>' in editor.get(f"/editions/{edition.id}").text
    assert "Talks resume in Doha" in editor.get(f"/editions/{edition.id}/html").text


def test_intro(editor: TestClient, edition: Edition, store: Store) -> None:
    _saved(_edit(editor, edition, intro="A *quiet* week."), edition)
    assert store.overrides(edition.id).intro == "A *quiet* week."
    assert "<em>quiet</em>" in editor.get(f"/editions/{edition.id}/html").text
    r = _edit(editor, edition, intro="x" * 10_001)
    assert r.status_code == 400 and "longer than 10000 characters" in r.text
    assert store.overrides(edition.id).intro == "A *quiet* week."


def test_pins_come_first_in_their_section(
    editor: TestClient, edition: Edition, store: Store
) -> None:
    oldest, middle, newest = ARTICLES
    html = editor.get(f"/editions/{edition.id}/html").text
    assert html.index(newest.title) < html.index(oldest.title)  # newest first, unpinned
    _saved(_edit(editor, edition, pin=[middle.id, oldest.id]), edition)
    assert store.overrides(edition.id).pinned == (middle.id, oldest.id)
    html = editor.get(f"/editions/{edition.id}/html").text
    positions = _order(html, middle.title, oldest.title, newest.title)
    assert positions == sorted(positions)
    page = editor.get(f"/editions/{edition.id}").text
    assert f'name="pin" value="{oldest.id}" checked' in page
    # A box left unticked unpins; the others stay in their order.
    _saved(_edit(editor, edition, pin=[oldest.id]), edition)
    assert store.overrides(edition.id).pinned == (oldest.id,)


def test_pin_another_article_by_reference(
    editor: TestClient, edition: Edition, store: Store, clock: Clock
) -> None:
    # An article of another section, older than the rest: pinned by its id.
    extra = article(1, source="analysis", title="Older analysis")
    store.save_articles([extra], now=clock())
    _saved(_edit(editor, edition, pin_ref=f" {extra.id} "), edition)
    assert store.overrides(edition.id).pinned == (extra.id,)
    assert "Older analysis" in editor.get(f"/editions/{edition.id}/html").text
    r = _edit(editor, edition, pin_ref="no-such-article")
    assert r.status_code == 400
    assert "Pin another article" in r.text and "no-such-article" in r.text
    assert store.overrides(edition.id).pinned == (extra.id,)


def test_an_article_both_pinned_and_left_out_is_refused(
    editor: TestClient, edition: Edition, store: Store
) -> None:
    a = ARTICLES[1]
    r = _edit(editor, edition, pin=[a.id], exclude=[a.id])
    _refused(r, store, edition, "is both pinned and left out")
    assert a.title in r.text


def test_exclusions_and_putting_back(editor: TestClient, edition: Edition, store: Store) -> None:
    gone = ARTICLES[2]
    _saved(_edit(editor, edition, pin=[gone.id]), edition)
    _saved(_edit(editor, edition, exclude=[gone.id]), edition)
    overrides = store.overrides(edition.id)
    assert (overrides.pinned, overrides.excluded) == ((), (gone.id,))
    assert gone.title not in editor.get(f"/editions/{edition.id}/html").text
    _saved(_edit(editor, edition), edition)
    assert store.overrides(edition.id).excluded == ()
    assert gone.title in editor.get(f"/editions/{edition.id}/html").text


@pytest.fixture
def two_sections(edition: Edition, store: Store, clock: Clock) -> Edition:
    store.save_articles([article(9, source="analysis", title="Analysis nine")], now=clock())
    return edition


def test_section_order(editor: TestClient, two_sections: Edition, store: Store) -> None:
    edition = two_sections
    # The analysis section moves up to first place; the others keep their order.
    positions = {"position.diplomacy-watch": "1", "position.qiosk": "2", "position.analysis": "1"}
    _saved(_edit(editor, edition, **positions), edition)
    assert store.overrides(edition.id).section_order == ("analysis", "diplomacy-watch", "qiosk")
    html = editor.get(f"/editions/{edition.id}/html").text
    assert html.index("Analysis nine") < html.index("Item 7")
    page = editor.get(f"/editions/{edition.id}").text
    assert 'name="position.analysis" value="1"' in page
    assert 'name="position.qiosk" value="3"' in page
    # Moved down to a taken place, it goes after the section there.
    r = _edit(editor, edition, **{"position.analysis": "3", "position.qiosk": "3"})
    _saved(r, edition)
    # ... which is the digest's own order again: nothing of the editor's is left.
    assert store.overrides(edition.id).section_order == ()
    html = editor.get(f"/editions/{edition.id}/html").text
    assert html.index("Item 7") < html.index("Analysis nine")


@pytest.mark.parametrize("bad", ["0", "4", "two", "-1", "1.5"])
def test_a_wrong_position_is_refused_on_the_page(
    editor: TestClient, edition: Edition, store: Store, bad: str
) -> None:
    r = _edit(editor, edition, **{"position.qiosk": bad})
    _refused(r, store, edition, "must be a whole number from 1 to 3")
    assert re.search(r"section “QiOSK”", r.text)
