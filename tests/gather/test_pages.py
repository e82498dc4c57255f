"""Article pages → lede, image and metadata (digest.gather.pages), on hand-written pages.

The pages under tests/data/pages imitate real CMS output (RebelMouse, WordPress) with invented
text: navigation, social prompts, image file names, captions, credits, kickers, share bars and
rails of related-article cards around the body.
"""

from __future__ import annotations

import html
import re
import socket
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.compose.teasers import lede
from digest.errors import PermanentError
from digest.gather.pages import MAX_PAGE_BYTES, PageError, PageExtract, extract_page
from digest.models import Article
from digest.text import graphemes

DATA = Path(__file__).resolve().parents[1] / "data" / "pages"
SEED_URL = "https://meridian.example/europe/baltic-ferry-deal"


def _page(name: str) -> bytes:
    return (DATA / name).read_bytes()


SEED = _page("seed_like.html")

# The body as a reader sees it: entities decoded (&mdash; &ldquo; &#324; &rsquo;).
BODY = (
    "When transport ministers from Sweden, Finland and Poland signed a two-page memorandum in "
    "Gdańsk on Tuesday, few reporters were in the room. The text allots night-time ferry slots "
    "across the southern Baltic for the next five years — hardly the stuff of headlines — yet "
    "diplomats on all three sides describe it as the first “real” cooperative step since the "
    "grain-corridor quarrel of 2022.",
    "The dispute that the memorandum settles is older than it looks. Polish hauliers have long "
    "complained that Nordic operators keep the best crossings for themselves, while Stockholm’s "
    "port authority argues that its terminals cannot absorb more lorries without new customs "
    "lanes. Each side has spent two years blaming the other’s regulators.",
)
FURNITURE = (
    "Follow us on social",
    "Shutterstock_123456789",
    "Cranes over the container terminal",
    "Photo by K. Lindqvist",
    "Analysis | Europe",
    "Analysis",
    "A quiet agreement on ferry quotas",
    "Ingrid Halvorsen-Nowak",
    "Share this article",
    "Keep reading",
    "Show less",
    "Diplomacy Watch",
    "QiOSK",
    "Lucerne",
    "export panel",
    "mixed signals",
    "All rights reserved",
)


def _assert_no_furniture(paragraphs: tuple[str, ...]) -> None:
    joined = "\n".join(paragraphs)
    for text in FURNITURE:
        assert text not in joined, text


# --------------------------------------------------------------------------------------------
# The seed-like RebelMouse page
@pytest.fixture(scope="module")
def seed() -> PageExtract:
    return extract_page(SEED, url=SEED_URL, max_paragraphs=10)


def test_seed_paragraphs_are_the_body_in_order(seed: PageExtract) -> None:
    assert seed.paragraphs[:2] == BODY
    assert len(seed.paragraphs) == 6  # the whole body, and nothing after it
    assert seed.paragraphs[-1].startswith("Brussels, for its part")
    _assert_no_furniture(seed.paragraphs)


def test_seed_text_is_decoded_with_typography_intact(seed: PageExtract) -> None:
    text = "\n".join(seed.paragraphs)
    assert "&" not in text and "<" not in text
    assert "“real”" in text and "Stockholm’s" in text and " — " in text and "Gdańsk" in text


def test_seed_image_is_the_lazy_loaded_lead_with_caption_and_credit(seed: PageExtract) -> None:
    image = seed.image
    assert image is not None
    # data-runner-src, not the data: placeholder and not a related card's picture.
    assert image.url == (
        "https://assets.meridian.example/media-library/harbour-cranes.jpg?id=55501&width=980&quality=85"
    )
    assert image.caption == (
        "Cranes over the container terminal at Gdynia, where the new ferry slots will be allotted."
    )
    assert image.credit == "Photo by K. Lindqvist / Shutterstock"
    # The file name is no description: og:image:alt stands in for it.
    assert image.alt == "Cranes over a Baltic container harbour at dusk"
    assert (image.width, image.height) == (980, 550)


def test_seed_metadata(seed: PageExtract) -> None:
    assert seed.title == "Can a Baltic ferry deal thaw Nordic–Polish ties?"
    assert seed.published == datetime(2024, 3, 14, 8, 30, tzinfo=UTC)
    assert seed.published is not None and seed.published.utcoffset() == timedelta(hours=1)
    assert seed.authors == ("Ingrid Halvorsen-Nowak", "Tomasz Ferreira")
    assert seed.description.startswith("A quiet agreement on ferry quotas")


def test_max_paragraphs_caps_the_lede() -> None:
    assert extract_page(SEED, url=SEED_URL, max_paragraphs=2).paragraphs == BODY
    assert extract_page(SEED, url=SEED_URL).paragraphs[:2] == BODY
    assert len(extract_page(SEED, url=SEED_URL).paragraphs) == 5


def _div_soup(page: bytes) -> bytes:
    # The same page without semantic elements, as many CMS themes write it: the related rail
    # is then only a <div class="related-posts">, no longer a <section> after an <article>.
    tags = rb"article|main|header|section|nav|footer|figure|h1|h2|h3"
    return re.sub(rb"<(/?)(" + tags + rb")\b", rb"<\1div", page)


def test_related_rail_stays_out_of_a_page_of_plain_divs() -> None:
    found = extract_page(_div_soup(SEED), url=SEED_URL, max_paragraphs=10)
    assert found.paragraphs[:2] == BODY
    assert len(found.paragraphs) == 6
    _assert_no_furniture(found.paragraphs)
    assert found.image is not None and found.image.credit == "Photo by K. Lindqvist / Shutterstock"


def test_a_wrapper_with_a_share_class_is_not_pruned_with_the_body() -> None:
    page = SEED.replace(
        b'<body class="post-page">', b'<body class="post-page"><div class="wrap has-share-bar">'
    ).replace(b"</body>", b"</div></body>")
    assert extract_page(page, url=SEED_URL).paragraphs[:2] == BODY


# --------------------------------------------------------------------------------------------
# Images
@pytest.mark.parametrize(
    "attribute",
    [b"data-src", b"data-lazy-src", b"data-original", b"srcset"],
)
def test_lazy_loading_attributes_are_honoured(attribute: bytes) -> None:
    page = SEED.replace(b"data-runner-src=", attribute + b"=", 1)
    image = extract_page(page, url=SEED_URL).image
    assert image is not None
    assert image.url.startswith("https://assets.meridian.example/media-library/harbour-cranes.jpg")
    assert image.caption.startswith("Cranes over the container terminal")


def test_og_image_stands_in_when_the_article_shows_no_picture() -> None:
    page = re.sub(rb'<div class="widget__image">.*?</div>\s*</div>', b"</div>", SEED, flags=re.S)
    image = extract_page(page, url=SEED_URL).image
    assert image is not None
    assert image.url.endswith(
        "harbour-cranes.jpg?id=55501&width=1200&height=600&coordinates=0%2C40%2C0%2C40"
    )
    assert image.alt == "Cranes over a Baltic container harbour at dusk"
    assert image.caption == image.credit == ""


def test_no_image_at_all_and_non_http_images_are_refused() -> None:
    page = re.sub(rb'<meta (property|name)="(og|twitter):image[^>]*>', b"", SEED)
    page = re.sub(rb"<img[^>]*>", b"", page)
    assert extract_page(page, url=SEED_URL).image is None
    page = page.replace(
        b"<p>When transport",
        b'<img src="javascript:alert(1)" alt="x"><img src="ftp://h/x.jpg"><p>When transport',
        1,
    )
    assert extract_page(page, url=SEED_URL).image is None


# --------------------------------------------------------------------------------------------
# Other pages
def test_wordpress_page_keeps_its_furniture_out() -> None:
    found = extract_page(
        _page("wordpress.html"), url="https://coastline.example/2024/05/pilots-talks"
    )
    assert found.paragraphs == (
        "Harbour pilots and the port board met on Thursday for the first time since the "
        "stoppages began in March, and both sides left the room saying the talks would "
        "continue next week.",
        "The dispute turns on rest periods. Pilots say the board’s new rota leaves too little "
        "time between night transfers; the board says the rota only restores rules that "
        "lapsed during the pandemic.",
        "Shipping agents, who have rerouted dozens of calls to the neighbouring port, welcomed "
        "the meeting but warned that their customers had already signed contracts for the "
        "summer.",
        "A mediator appointed by the regional government is expected to publish a first report "
        "within a fortnight.",
    )
    joined = "\n".join(found.paragraphs)
    for text in ("appeared first on", "Continue reading", "quay levy", "low tide", "Posted"):
        assert text not in joined
    assert found.title == "Harbour pilots return to the table"
    assert found.authors == ("Maeve O'Connell",)
    assert found.published == datetime(2024, 5, 2, 7, 15, tzinfo=UTC)
    assert found.image is not None
    assert found.image.url.endswith("pilots-boat-1024x683.jpg")
    assert found.image.alt == "A pilot boat leaving the harbour mouth"


def test_rtl_arabic_page_keeps_its_paragraphs_intact() -> None:
    found = extract_page(_page("rtl_arabic.html"), url="https://alofoq.example/a/1")
    assert len(found.paragraphs) == 4
    assert found.paragraphs[0] == (
        "وقّع وزراء المياه في ثلاث دول متجاورة يوم الأحد اتفاقاً لتقاسم مياه النهر خلال مواسم "
        "الجفاف، بعد مفاوضات استمرت أكثر من عامين."
    )
    assert found.paragraphs[2] == (
        "وقال أحد المفاوضين إن «الثقة لا تُبنى بالبيانات الختامية، بل بجداول القياس التي يراها "
        "الجميع»."
    )
    joined = "\n".join(found.paragraphs)
    for text in ("تحليل", "تابعونا", "شارك", "تصوير", "لجنة فنية مشتركة تراقب منسوب المياه وتنشر"):
        assert text not in joined
    assert found.title == "اتفاق جديد لتقاسم مياه النهر"
    assert found.authors == ("ليلى حداد",)
    assert found.published == datetime(2024, 6, 9, 18, 0, tzinfo=timezone(timedelta(hours=3)))
    assert found.image is not None
    assert found.image.caption == "سد على النهر قرب الحدود."
    assert found.image.credit == "تصوير: سامر خليل"


def test_declared_legacy_charset_is_honoured() -> None:
    text = SEED.decode("utf-8").replace('charset="utf-8"', 'charset="windows-1252"')
    text = text.replace("Gda&#324;sk", "Gdansk")  # outside windows-1252
    found = extract_page(text.encode("cp1252"), url=SEED_URL)
    assert found.paragraphs[1] == BODY[1]
    assert "“real”" in found.paragraphs[0]


@pytest.mark.parametrize("name", ["login.html", "shell.html"])
def test_page_without_an_article_is_a_page_error(name: str) -> None:
    url = f"https://meridian.example/{name}"
    with pytest.raises(PageError, match=re.escape(f"page {url}: no article text found")):
        extract_page(_page(name), url=url)


@pytest.mark.parametrize(
    "body", [b"", "   ", b"\x00\x00", "<html></html>", b"%PDF-1.7\n", "not html at all"]
)
def test_empty_and_non_html_bodies_are_page_errors(body: bytes | str) -> None:
    with pytest.raises(PageError) as info:
        extract_page(body, url="https://x.example/p")
    assert "https://x.example/p" in str(info.value)
    assert isinstance(info.value, PermanentError) and not info.value.retryable


def test_oversized_page_is_refused_before_parsing() -> None:
    with pytest.raises(PageError, match="limit"):
        extract_page(b"<p>" + b"x" * MAX_PAGE_BYTES, url="https://x.example/big")


def test_extraction_opens_no_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access during extraction")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for name in ("seed_like.html", "wordpress.html", "rtl_arabic.html"):
        assert extract_page(_page(name), url="https://x.example/a").paragraphs


# --------------------------------------------------------------------------------------------
# Hostile input: PageError or a result, nothing else
def _never_raises_else(body: bytes | str) -> None:
    try:
        found = extract_page(body, url="https://x.example/fuzz")
    except PageError:
        return
    assert found.paragraphs and all(found.paragraphs)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_only_raise_page_error(body: bytes) -> None:
    _never_raises_else(body)


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=len(SEED)), st.binary(max_size=64))
def test_truncated_and_spliced_seed_only_raise_page_error(cut: int, noise: bytes) -> None:
    _never_raises_else(SEED[:cut])
    _never_raises_else(SEED[:cut] + noise + SEED[cut:])


@pytest.mark.parametrize(
    "body",
    [
        "<div>" * 5000 + "<p>deep</p>",
        "<html><body>" + "<p>x</p>" * 20000 + "</body></html>",
        '<html><head><script type="application/ld+json">' + "[" * 5000 + "</script></head></html>",
        '<meta property="article:published_time" content="99999-01-01T00:00:00">'
        + "<article><p>"
        + "word " * 40
        + "</p></article>",
        "<html>\ud800<body><p>\x00\x01\x1b lone surrogate</p></body></html>",
        '<?xml version="1.0" encoding="utf-8"?><html><body><p>declared</p></body></html>',
    ],
)
def test_pathological_markup_only_raises_page_error(body: str) -> None:
    _never_raises_else(body)


# --------------------------------------------------------------------------------------------
# End to end with the teaser's lede
def test_extracted_paragraphs_make_the_teasers_lede(seed: PageExtract) -> None:
    article = Article(
        id="a1",
        source="meridian",
        url=SEED_URL,
        title=seed.title,
        authors=seed.authors,
        published=seed.published or datetime(2024, 3, 14, tzinfo=UTC),
        content_html="".join(f"<p>{html.escape(p)}</p>" for p in seed.paragraphs),
        image=seed.image,
    )
    skip = (seed.image.caption, seed.image.credit) if seed.image else ()
    ledes = lede(article, max_paragraphs=2, budget=450, skip=skip)
    # The first paragraph takes 387 of the 450 graphemes; the rest is too short for a second.
    assert len(graphemes(BODY[0])) == 387
    assert ledes == (BODY[0],)

    # With room for more, the second paragraph follows, cut to what is left.
    ledes = lede(article, max_paragraphs=2, budget=600, skip=skip)
    assert ledes[0] == BODY[0]
    assert ledes[1].endswith("…") and BODY[1].startswith(ledes[1].removesuffix("…"))
    assert sum(len(graphemes(p)) for p in ledes) <= 600
