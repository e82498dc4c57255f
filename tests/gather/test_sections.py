"""Which articles belong to a section: plain values in, plain values out."""

from __future__ import annotations

from typing import Any

import pytest

from digest.config import SectionSettings
from digest.gather.sections import articles_for_section, in_section
from tests.conftest import article


def section(**kw: Any) -> SectionSettings:
    return SectionSettings(**{"title": "S", "sources": ["qiosk"], **kw})


def test_source_must_be_one_of_the_sections_sources() -> None:
    arts = [article(1), article(2, source="analysis")]
    assert articles_for_section(arts, "s", section(), "qiosk") == [arts[0]]
    assert articles_for_section(arts, "s", section(), "analysis") == []
    both = section(sources=["qiosk", "analysis"])
    assert articles_for_section(arts, "s", both, "analysis") == [arts[1]]
    # in_section applies the filters only: an article stored once may come from two sources.
    assert in_section(arts[1], section())


def test_authors_and_title_exclusions() -> None:
    by = article(1, authors=("Nadia Petrenko", "Samuel Brandt"), title="Podcast: talks")
    assert in_section(by, section(authors=["nadia  petrenko"]))
    assert not in_section(by, section(authors=["Someone Else"]))
    assert not in_section(by, section(exclude_title_regex=r"^Podcast:"))
    assert in_section(by, section(exclude_title_regex=r"^Event"))


@pytest.mark.parametrize(
    ("title", "kept"),
    [
        ("Diplomacy Watch: Talks in Geneva", True),
        ("diplomacy   watch:  talks", True),  # case and spacing do not matter
        ("  Diplomacy Watch:x", True),
        ("Podcast: Diplomacy Watch: ...", False),
        ("Diplomacy Watcher", False),
    ],
)
def test_title_prefix(title: str, kept: bool) -> None:
    s = section(title_prefix="Diplomacy  Watch:")
    assert in_section(article(1, title=title), s) is kept


def test_title_regex_searches_anywhere() -> None:
    s = section(title_regex=r"\bQiOSK\b")
    assert in_section(article(1, title="This week in QiOSK"), s)
    assert not in_section(article(1, title="qiosk lower case"), s)  # regex decides case
    assert in_section(article(1, title="qiosk"), section(title_regex="(?i)QIOSK"))


def test_categories_any_match_case_insensitive() -> None:
    s = section(categories=["Middle East", "Energy"])
    assert in_section(article(1, categories=("news", "middle east")), s)
    assert not in_section(article(1, categories=("News",)), s)
    assert not in_section(article(1, categories=()), s)


def test_exclude_categories_none_may_match() -> None:
    s = section(exclude_categories=["Podcast"])
    assert in_section(article(1, categories=("News",)), s)
    assert not in_section(article(1, categories=("News", "PODCAST")), s)


def test_filters_combine() -> None:
    s = section(title_prefix="QiOSK", categories=["News"], exclude_categories=["Events"])
    assert in_section(article(1, title="QiOSK: a", categories=("News",)), s)
    assert not in_section(article(1, title="QiOSK: a", categories=("News", "Events")), s)
    assert not in_section(article(1, title="Other", categories=("News",)), s)


def test_empty_filters_keep_everything_of_the_source() -> None:
    assert in_section(article(1, title="", categories=()), section())


def test_articles_for_section_keeps_order_and_only_that_source() -> None:
    s = section(sources=["qiosk", "analysis"], exclude_categories=["Skip"])
    articles = [
        article(3),
        article(1, categories=("Skip",)),
        article(2, source="analysis"),
        article(5),
    ]
    kept = articles_for_section(articles, "qiosk", s, "qiosk")
    assert [a.id for a in kept] == [articles[0].id, articles[3].id]
    assert articles_for_section(articles, "qiosk", s, "analysis") == [articles[2]]


def test_articles_for_section_from_a_source_the_section_does_not_read() -> None:
    assert articles_for_section([article(1, source="other")], "qiosk", section(), "other") == []
