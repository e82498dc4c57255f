"""The "View in browser" link at the top of every variant: the edition's public web version,
``<links base>/v/<edition id>`` for the full edition and ``?s=<sorted section keys>`` for a variant
with chosen sections, the same for everyone who gets that variant (no personal token in it)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from digest.config import parse_settings
from digest.models import RenderedVariant
from digest.render import render_variant
from digest.render.email import view_sections, view_url
from digest.render.personalise import TOKENS, personalise
from tests.render import make_settings, settings_dict, weekly_edition

BASE = "https://m.example.org"
FULL = f"{BASE}/v/weekly-2026-W17"
QIOSK_ANALYSIS = f"{FULL}?s=analysis,qiosk"


class Links(HTMLParser):
    """Every link with its text, in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href") or ""
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append((self._href, " ".join("".join(self._text).split())))
            self._href = None


def links(html: str) -> list[tuple[str, str]]:
    parser = Links()
    parser.feed(html)
    parser.close()
    return parser.links


@pytest.fixture(scope="module")
def full() -> RenderedVariant:
    return render_variant(weekly_edition(), make_settings())


@pytest.fixture(scope="module")
def chosen() -> RenderedVariant:
    # Given in no particular order: the link sorts the keys.
    return render_variant(
        weekly_edition(), make_settings(), sections=frozenset({"qiosk", "analysis"})
    )


def test_full_edition_links_its_web_version_first(full: RenderedVariant) -> None:
    found = links(full.html)
    # The first link of the body, before the masthead.
    assert found[0] == (FULL, "View in browser")
    assert [href for href, _ in found].count(FULL) == 1
    assert full.text.splitlines()[0] == f"View in browser: {FULL}"


def test_section_variant_links_its_sorted_sections(chosen: RenderedVariant) -> None:
    assert links(chosen.html)[0] == (QIOSK_ANALYSIS, "View in browser")
    assert chosen.text.splitlines()[0] == f"View in browser: {QIOSK_ANALYSIS}"
    assert FULL + '"' not in chosen.html


def test_link_has_no_personal_token(full: RenderedVariant, chosen: RenderedVariant) -> None:
    for variant, url in ((full, FULL), (chosen, QIOSK_ANALYSIS)):
        assert not any(token in url for token in TOKENS)
        # Two subscribers of the variant get the same link.
        a_html, a_text = personalise(
            variant, unsubscribe_url=f"{BASE}/u/aaa", preferences_url=f"{BASE}/p/aaa", name="Ann"
        )
        b_html, b_text = personalise(
            variant, unsubscribe_url=f"{BASE}/u/bbb", preferences_url=f"{BASE}/p/bbb", name="Bo"
        )
        assert links(a_html)[0] == links(b_html)[0] == (url, "View in browser")
        assert a_text.splitlines()[0] == b_text.splitlines()[0] == f"View in browser: {url}"


def test_link_is_discreet_and_has_a_dark_mode_colour(full: RenderedVariant) -> None:
    cell = re.search(r'<td class="vw"[^>]*>(.*?)</td>', full.html, re.S)
    assert cell is not None
    assert "font-size:12px" in cell.group(1)
    assert re.search(r"\.vw a[^{]*\{ color: #a9adb3 !important; \}", full.html)


def test_web_version_itself_has_no_link() -> None:
    variant = render_variant(weekly_edition(), make_settings(), view_link=False)
    assert "View in browser" not in variant.html
    assert "View in browser" not in variant.text
    assert "/v/" not in variant.text


def test_which_sections_name_a_variant() -> None:
    edition = weekly_edition()
    settings = make_settings()
    everything = frozenset({"diplomacy-watch", "qiosk", "analysis"})
    assert view_sections(edition, None) is None
    # Every section is the full edition; keys the edition does not carry are dropped.
    assert view_sections(edition, everything) is None
    assert view_sections(edition, everything | {"gone"}) is None
    assert view_sections(edition, frozenset({"qiosk", "gone"})) == ("qiosk",)
    assert view_url(edition, settings, frozenset({"qiosk", "gone"})) == f"{FULL}?s=qiosk"
    assert view_url(edition, settings, everything) == FULL


def test_link_follows_the_web_base_url() -> None:
    data = settings_dict()
    data["web"] = {"base_url": "https://w.example.org"}
    settings = parse_settings(data, environ={})
    variant = render_variant(weekly_edition(), settings)
    assert links(variant.html)[0][0] == "https://w.example.org/v/weekly-2026-W17"
