"""Page ledes (digest.gather.pages) on the kinds of page that lost or hid the lede on real sites.

Each fixture is a small invented page in the shape of a failure found on real pages: a body
laid out in a table that trafilatura finds nothing in, a body of text and ``<br>``s, a first
paragraph left bare before the first ``<p>``, a description that CMSs copy from the first
paragraph, a dateline set apart by markup alone, a licence notice above the body.
"""

from __future__ import annotations

import pytest
import trafilatura

from digest.gather.pages import PageError, extract_page
from digest.gather.pages import body as page_body

URL = "https://coastline.example/2024/06/north-quay"
TITLE = "Night traffic returns to the north quay"
P1 = (
    "The harbour board voted on Thursday to reopen the north quay to night traffic from June, "
    "ending a closure that began after the storm of 2021."
)
P2 = (
    "Pilots had asked for the change for two years. The board said new lighting and a second "
    "tug made night berthing safe again."
)
P3 = "Shipping agents welcomed the decision but said the summer timetables were already set."
BODY = (P1, P2, P3)
MENU = "".join(f'<li><a href="/section/{i}">Section {i}</a></li>' for i in range(30))


def _page(body: str, head: str = "") -> str:
    return (
        f"<!doctype html><html><head><title>{TITLE} | Coastline</title>{head}</head><body>"
        f'<ul class="menu">{MENU}</ul>{body}'
        '<div class="footer"><p>Coastline News, 12 Quay Street.</p></div></body></html>'
    )


def _paragraphs(html: str) -> tuple[str, ...]:
    return extract_page(html, url=URL).paragraphs


# --------------------------------------------------------------------------------------------
# Falling back in order
TABLE_PAGE = _page(
    '<table><tr><td><img src="/logo.png" alt=""></td>'
    f"<td><h1>{TITLE}</h1><p>{P1}</p><p>{P2}</p><p>{P3}</p></td></tr></table>"
)


def test_a_page_trafilatura_finds_no_body_in_still_gives_its_paragraphs() -> None:
    # The kind of page this is: trafilatura alone finds none of the body.
    assert P1 not in (trafilatura.extract(TABLE_PAGE, **page_body.TRAFILATURA_OPTIONS) or "")
    assert _paragraphs(TABLE_PAGE) == BODY


def test_when_readability_cannot_score_the_page_its_own_paragraphs_are_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unparseable(*args: object, **kwargs: object) -> str:
        raise ValueError("cannot score")

    monkeypatch.setattr(page_body.Readability, "summary", unparseable)
    assert _paragraphs(TABLE_PAGE) == BODY


def test_a_page_without_prose_is_still_no_article() -> None:
    page = _page('<form><label>Email</label><input name="e"><button>Sign in</button></form>')
    with pytest.raises(PageError, match="no article text found"):
        extract_page(page, url=URL)


# --------------------------------------------------------------------------------------------
# The first real paragraph is the lede
def test_a_body_of_text_and_line_breaks_keeps_every_paragraph() -> None:
    page = _page(
        f'<div class="article"><h1>{TITLE}</h1><div class="byline">June 6, 2024 by M. Reyes</div>'
        f'<div class="content">{P1}<br><br>{P2}<br><br>{P3}</div></div>'
    )
    assert _paragraphs(page) == BODY


def test_a_first_paragraph_left_bare_before_the_first_p_is_the_lede() -> None:
    page = _page(f'<article><h1>{TITLE}</h1><div class="text">{P1}<p>{P2}</p><p>{P3}</p></div>')
    assert _paragraphs(page) == BODY


def test_a_description_copied_from_the_first_paragraph_is_the_lede() -> None:
    head = (
        f'<meta name="description" content="{P1}"><meta property="og:description" content="{P1}">'
    )
    page = _page(f"<article><h1>{TITLE}</h1><p>{P1}</p><p>{P2}</p><p>{P3}</p></article>", head)
    found = extract_page(page, url=URL)
    assert found.paragraphs == BODY
    assert found.description == P1


@pytest.mark.parametrize(
    "standfirst",
    [
        "<header><h1>{title}</h1><p>{dek}</p></header>",
        '<h1>{title}</h1><p class="article-dek">{dek}</p>',
        "<h1>{title}</h1><h2>{dek}</h2>",
    ],
)
def test_a_standfirst_the_page_shows_as_one_stays_out(standfirst: str) -> None:
    dek = "After three years of closures, the port's busiest quay works around the clock again."
    head = f'<meta name="description" content="{dek}">'
    shown = standfirst.format(title=TITLE, dek=dek)
    page = _page(f"<article>{shown}<p>{P1}</p><p>{P2}</p><p>{P3}</p></article>", head)
    assert _paragraphs(page) == BODY


def test_a_dateline_set_apart_by_markup_keeps_its_space() -> None:
    page = _page(
        f"<article><h1>{TITLE}</h1><p><cite>Portsmouth (Coastline)</cite>The harbour board "
        f"voted on Thursday to reopen the north quay.</p><p>{P2}</p><p>{P3}</p></article>"
    )
    first = _paragraphs(page)[0]
    assert first.startswith("Portsmouth (Coastline) The harbour board voted")


def test_a_licence_notice_and_a_bare_link_are_not_the_lede() -> None:
    notice = (
        "This copy is for your personal, non-commercial use only. To order presentation-ready "
        "copies for distribution to colleagues, clients or customers, use the Order Reprints tool."
    )
    page = _page(
        f"<article><h1>{TITLE}</h1><p>{notice}</p><p>{URL}</p>"
        f"<p>{P1}</p><p>{P2}</p><p>{P3}</p><p>© 2024 Coastline News. All rights reserved.</p>"
        "</article>"
    )
    assert _paragraphs(page) == BODY


def test_a_rail_paragraph_hoisted_above_the_body_is_dropped() -> None:
    rail = "Night mode is an automatic setting of the new cameras that lets in more light at dusk."
    page_text = f"{TITLE} {P1} {P2} {P3} Guides {rail}"
    assert page_body.in_page_order([rail, P1, P2, P3], page_text) == [P1, P2, P3]
    # In the page's own order, nothing moves; short lines never decide.
    assert page_body.in_page_order([P1, P2, P3], page_text) == [P1, P2, P3]
    assert page_body.in_page_order(["Guides", P1], page_text) == ["Guides", P1]
