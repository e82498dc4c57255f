"""Teaser rules that hold on real feeds: one small fixture per kind of flaw real feeds carry.

Each feed item is parsed as gather parses it (``parse_feed``), so the fixtures are what feeds
serve, not what the code under test would like to see.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

import pytest

from digest.compose.teasers import MIN_CARD_CHARS, card_title, kicker_for, lede, make_teaser
from digest.config import SectionSettings
from digest.gather.feeds import parse_feed
from digest.models import Article, Image, Teaser
from digest.steps.gather import is_thin
from tests.conftest import article

NOW = datetime(2026, 3, 1, tzinfo=UTC)
SECTION = SectionSettings(title="News", sources=["feed"], kicker="News | {category}")
BODY = (
    "Negotiators returned to Doha this week after a six-week pause, with mediators pressing "
    "both delegations to finalize a monitoring mechanism for the ceasefire line."
)


def item(description: str = "", *, title: str = "Talks resume in Doha", extra: str = "") -> str:
    return (
        f"<item><title>{title}</title><link>https://news.example/a</link>"
        f"<description>{escape(description)}</description>{extra}</item>"
    )


def parsed(*items: str, channel: str = "A News Desk") -> list[Article]:
    body = (
        '<?xml version="1.0"?><rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/">'
        f"<channel><title>{channel}</title><link>https://news.example/</link>"
        f"{''.join(items)}</channel></rss>"
    )
    return parse_feed(
        body.encode(), source="feed", url="https://news.example/feed", now=NOW
    ).articles


def teaser(a: Article, section: SectionSettings = SECTION) -> Teaser:
    return make_teaser(a, section_key="news", section=section, max_paragraphs=2, budget=450)


def text_of(description: str, **kw: str) -> str:
    (a,) = parsed(item(description, **kw))
    return " ¶ ".join(teaser(a).paragraphs)


@pytest.mark.parametrize(
    "description",
    [
        # WordPress's excerpt: "[…]" and its spellings, at the end.
        f"<p>{BODY[:-1]} and […]</p>",
        f"<p>{BODY[:-1]} and [&hellip;]</p>",
        f"<p>{BODY[:-1]} and [...]</p>",
        # "The post X appeared first on Y", in its own paragraph and inside the last one.
        f"<p>{BODY}</p><p>The post <a href='https://b.example/a'>Talks</a> appeared first on "
        "<a href='https://b.example/'>A Blog</a>.</p>",
        f"<p>{BODY} The post Talks first appeared on A Blog.</p>",
        # More-links: "Continue reading →" (with the post's title), "Read more", "… Read more".
        f"<p>{BODY[:-1]} … <a href='https://b.example/a'>Continue reading "
        "<span>Talks resume in Doha.</span> <span>&#8594;</span></a></p>",
        f"<p>{BODY} <a href='https://b.example/a'>Read more »</a></p>",
        f"<p>{BODY[:-1]} … <a href='https://b.example/a'>Read more</a></p>",
        f"<p>{BODY}</p><p><a href='https://b.example/a'>Continue reading →</a></p>",
        f"<p>{BODY[:-1]} [&hellip;] <a href='https://b.example/a'>Weiterlesen</a></p>",
    ],
)
def test_furniture_is_removed_wherever_it_stands(description: str) -> None:
    text = text_of(description)
    assert text.startswith("Negotiators returned to Doha")
    for furniture in ("[", "appeared", "Continue", "Read more", "Weiterlesen", "→", "»"):
        assert furniture not in text
    # What the source cut short ends with an ellipsis; what it finished, with its full stop.
    assert text.endswith(("line.", "and…", "line…"))


def test_furniture_in_the_middle_goes_and_the_text_stays() -> None:
    text = text_of(f"<p>Talks resumed on Monday. […] {BODY}</p>")
    assert text == f"Talks resumed on Monday. {BODY}"


def test_a_summary_cut_mid_sentence_gets_an_ellipsis() -> None:
    cut = "making startup 30% faster in one case and 5% in"
    assert text_of(f"<p>{BODY[:-1]}, {cut}</p>").endswith(f"{cut}…")
    # With a sentence end in the last half, the card ends there instead.
    assert text_of(f"<p>{BODY} Critics said the text was {cut}</p>") == BODY
    # A later paragraph that stops mid-sentence (an intro to a list) is dropped.
    assert text_of(f"<p>{BODY}</p><p>The sticking points are these:</p><ul><li>a</li></ul>") == (
        BODY
    )


def test_a_lede_that_repeats_the_title_is_skipped() -> None:
    assert text_of(f"<p>Talks resume in Doha.</p><p>{BODY}</p>") == BODY
    assert text_of(f"<p>TALKS RESUME IN DOHA!</p><p>{BODY}</p>") == BODY


def test_headings_labels_and_code_are_not_the_lede() -> None:
    code = (
        "<p>log_format t '$remote_addr - [$time_local] \"$request\" $status rt=$request_time';</p>"
    )
    assert text_of(f"<h2>Key takeaways</h2><p><b>JSON beats JSONB</b></p>{code}<p>{BODY}</p>") == (
        BODY
    )


@pytest.mark.parametrize(
    "description",
    [
        "Introduction",
        "<p>Time to recap a good year.</p>",
        "",
        "<p><img src='https://i.example/1.jpg'></p>",
    ],
)
def test_too_short_for_a_card_makes_a_headline(description: str) -> None:
    (a,) = parsed(item(description))
    t = teaser(a)
    assert not t.full and t.paragraphs == () and t.image is None
    assert t.title == "Talks resume in Doha"
    # Gather fetches the page of every such item: "thin" covers "too short for a card".
    assert is_thin(a)


def test_a_short_summary_gives_way_to_the_content() -> None:
    (a,) = parsed(
        item(
            "<p>Time to recap a good year.</p>",
            extra=f"<content:encoded xmlns:content='http://purl.org/rss/1.0/modules/content/'>"
            f"<![CDATA[<p>{BODY}</p>]]></content:encoded>",
        )
    )
    assert teaser(a).paragraphs == (BODY,)


def test_a_video_description_is_the_lede_not_a_caption() -> None:
    extra = (
        "<media:group><media:thumbnail url='https://i.example/v.jpg'/>"
        f"<media:description>{BODY}</media:description></media:group>"
    )
    (a,) = parsed(item("", extra=extra))
    t = teaser(a)
    assert t.full and t.paragraphs == (BODY,)
    assert t.image is not None and t.image.caption == ""


def test_every_card_has_enough_text() -> None:
    a = article(1, summary_html="<p>Too short.</p>")
    assert lede(a, max_paragraphs=2, budget=450) == ("Too short.",)
    assert not teaser(a).full
    assert teaser(article(2, summary_html=f"<p>{BODY}</p>")).full
    assert MIN_CARD_CHARS == 40


@pytest.mark.parametrize(
    ("categories", "kicker"),
    [
        (("1", "World"), "News | World"),
        (("7", "a", "#", "2026-03-01"), "News"),
        (("uae-politics-diplomacy", "Middle East"), "News | Middle East"),
        (("UAE-POLITICS-DIPLOMACY-SUMMIT",), "News"),
        (("4f3a9b2c1d7e", "Uncategorized", "Asia-Pacific"), "News | Asia-Pacific"),
        (("Environment, Fisheries, Politics, Argentina",), "News"),
        (("news", "COVID-19"), "News | COVID-19"),
    ],
)
def test_kickers_only_from_real_categories(categories: tuple[str, ...], kicker: str) -> None:
    assert kicker_for(article(1, categories=categories), SECTION) == kicker


def test_the_feeds_own_title_is_no_category() -> None:
    extra = "<category>A News Desk</category><category>Diplomacy</category>"
    (a,) = parsed(item(f"<p>{BODY}</p>", extra=extra), channel="A News Desk")
    assert a.categories == ("Diplomacy",)
    assert teaser(a).kicker == "News | Diplomacy"


def test_kicker_categories_allow_list() -> None:
    section = SectionSettings(
        title="News",
        sources=["feed"],
        kicker="News | {category}",
        kicker_categories=["europe", "Africa"],
    )
    a = article(1, categories=("Politics", "Europe", "Africa"))
    assert kicker_for(a, section) == "News | Europe"
    assert kicker_for(article(2, categories=("Politics",)), section) == "News"


@pytest.mark.parametrize(
    ("alt", "caption", "expected"),
    [
        (
            "UAE-POLITICS-DIPLOMACY-SUMMIT",
            "Delegates arrive in Abu Dhabi.",
            "Delegates arrive in Abu Dhabi.",
        ),
        ("UAE-POLITICS-DIPLOMACY-SUMMIT", "", "Talks resume in Doha"),
        ("IMG_20251127_065633", "", "Talks resume in Doha"),
        ("shutterstock-645187786.jpg", "", "Talks resume in Doha"),
        ("1234567", "", "Talks resume in Doha"),
        ("↩", "", "Talks resume in Doha"),
        ("Delegates take their seats", "A caption", "Delegates take their seats"),
    ],
)
def test_alt_text_that_is_a_slug_id_or_file_name_is_replaced(
    alt: str, caption: str, expected: str
) -> None:
    image = Image(url="https://i.example/1.jpg", alt=alt, caption=caption)
    a = article(1, title="Talks resume in Doha", summary_html=f"<p>{BODY}</p>", image=image)
    t = teaser(a)
    assert t.image is not None and t.image.alt == expected


def test_strip_title_prefix() -> None:
    section = SectionSettings(
        title="Diplomacy Watch",
        sources=["feed"],
        title_prefix="Diplomacy Watch:",
        strip_title_prefix=True,
    )
    a = article(1, title="Diplomacy Watch: Ceasefire talks resume in Doha")
    assert card_title(a, section) == "Ceasefire talks resume in Doha"
    assert teaser(a, section).title == "Ceasefire talks resume in Doha"
    # Case and spacing as the section filter sees them; never an empty title.
    assert card_title(article(2, title="diplomacy watch:  Talks"), section) == "Talks"
    assert card_title(article(3, title="Diplomacy Watch:"), section) == "Diplomacy Watch:"
    kept = section.model_copy(update={"strip_title_prefix": False})
    assert card_title(a, kept) == "Diplomacy Watch: Ceasefire talks resume in Doha"
