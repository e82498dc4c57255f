"""Feed bytes → articles: RSS and Atom fixtures written for these tests, broken and mislabelled
bodies, thin feeds, images and ids through ``parse_feed``, the project's sample feeds.

Hostile XML is in test_guard.py, JSON Feed in test_jsonfeed.py, the URL, id, title and HTML
normalisers in test_normalise.py, the lxml fast path in test_fastpath.py.
"""

from __future__ import annotations

import contextlib
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.errors import FeedError
from digest.gather.feeds import article_id, parse_feed
from tests.gather import DATA, FORBIDDEN, NOW, parse

PROJECT = Path(__file__).resolve().parents[2]
SAMPLES = PROJECT / "config" / "sample"


# RSS 2.0 with Media RSS ----------------------------------------------------------------------
def test_rss2_entry_is_normalised() -> None:
    feed = parse("rss2_media.xml")
    assert feed.title == "The Harbor & Bridge Gazette"
    first = feed.articles[0]
    assert first.title == "Ferry talks resume again & stall"
    # Resolved against the feed URL; utm_* and fbclid gone, page kept; fragment dropped.
    assert first.url == "https://feeds.example.org/ferries/talks-resume?page=2"
    assert first.guid == "gazette-ferry-talks-2025-01"
    assert first.id == "a" + hashlib.sha256(b"gazette-ferry-talks-2025-01").hexdigest()[:20]
    assert first.authors == ("Mara Quill", "Tobias Fenn")  # both dc:creator, not the last only
    assert first.categories == ("Transport", "Harbor")  # " transport " is a duplicate
    assert first.published == datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
    assert first.updated is None
    assert first.source == "test"


def test_rss2_html_is_sanitised_and_links_resolved() -> None:
    first = parse("rss2_media.xml").articles[0]
    assert first.summary_html == (
        '<p>Negotiators met on Monday. <a href="https://feeds.example.org/ferries/background" '
        'rel="noopener noreferrer">Background</a></p>'
    )
    content = first.content_html
    for bad in ("javascript:", "onclick", "<iframe", "ads.example.net", "<script"):
        assert bad not in content
    assert 'src="https://feeds.example.org/images/ferry.jpg"' in content
    assert 'alt="A ferry at dawn"' in content


def test_media_content_gives_image_with_caption_and_credit() -> None:
    image = parse("rss2_media.xml").articles[0].image
    assert image is not None
    assert image.url == "https://img.gazette.example.org/ferry-large.jpg"
    assert image.caption == "The morning ferry leaves the north pier."
    assert image.credit == "Photo: Ana Lind / Gazette"
    assert (image.width, image.height) == (1200, 675)
    assert image.alt == ""  # no <img> in the content shows this picture


def test_media_description_before_description_keeps_the_summary() -> None:
    # Plain feedparser would make the caption the summary and move the summary to content.
    second = parse("rss2_media.xml").articles[1]
    assert second.summary_html == "Council votes on the toll."
    assert second.content_html == ""
    assert second.image is not None
    assert second.image.caption == "The bridge at night"
    assert second.updated == datetime(2025, 1, 8, 9, 0, tzinfo=UTC)


def test_thumbnail_then_enclosure_and_undated_entries() -> None:
    feed = parse("rss2_media.xml")
    third = feed.articles[2]
    assert third.image is not None
    assert third.image.url == "https://img.gazette.example.org/ice-thumb.jpg"
    assert (third.image.width, third.image.height) == (150, 100)
    assert third.published == NOW  # no date: first-seen time
    assert any("without a date" in w for w in feed.warnings)


def test_entry_without_link_or_title_is_skipped_with_a_warning() -> None:
    feed = parse("rss2_media.xml")
    assert len(feed.articles) == 3
    assert any("entry 4 skipped (neither a link nor a title)" in w for w in feed.warnings)


def test_feedparser_keeps_media_description_apart() -> None:
    # Pins the behaviour feeds.feedparser_patch adds to feedparser; an upgrade that changes it
    # shows here.
    parsed = feedparser.parse((DATA / "rss2_media.xml").read_bytes())
    entry = parsed.entries[1]
    assert entry["media_description"][0]["content"] == "The bridge <b>at night</b>"
    assert entry["summary"] == "Council votes on the toll."


# Atom -----------------------------------------------------------------------------------------
def test_atom_entry() -> None:
    feed = parse("atom.xml")
    assert feed.title == "Analysis & Opinion"
    first, second = feed.articles
    assert first.title == "Water & power: a regional view"
    assert first.url == "https://analysis.example.org/2025/water-power"
    assert first.authors == ("Lena Ortiz", "Sami Okafor")
    assert first.categories == ("Middle East", "Energy")
    assert first.published == datetime(2025, 1, 31, 14, 0, tzinfo=UTC)
    assert first.updated == datetime(2025, 2, 1, 10, 0, tzinfo=UTC)
    assert first.summary_html == "Dams &lt;and&gt; diplomacy."  # type="text" stays text
    assert 'href="https://analysis.example.org/2025/notes"' in first.content_html
    assert first.image is not None
    assert first.image.url == "https://img.analysis.example.org/dam.jpg"
    # Only `updated`: that is the published date, and no separate update.
    assert (second.published, second.updated) == (datetime(2025, 1, 20, tzinfo=UTC), None)
    # A literal "<tag>" in a plain-text title is dropped like markup: titles are one safe line.
    assert second.title == "Plain text title with a in it"


def test_rss091_with_public_doctype_is_fine() -> None:
    feed = parse("rss091.xml")
    assert [a.title for a in feed.articles] == ["Café opens on Pier 9"]
    assert feed.articles[0].summary_html == "A café with a view."


# Broken XML ----------------------------------------------------------------------------------
def test_malformed_feed_without_entries_is_a_feed_error() -> None:
    url = "https://feeds.example.org/malformed.xml"
    with pytest.raises(FeedError) as info:
        parse("malformed.xml", url)
    message = info.value.message
    assert message.startswith(f"feed 'test' ({url}): not a usable feed")
    assert "SAXParseException" in message


def test_bozo_feed_with_entries_keeps_them_with_a_warning() -> None:
    feed = parse("bozo_with_entries.xml")
    assert [a.title for a in feed.articles] == ["Salt & pepper"]
    assert any("parsed despite problems" in w for w in feed.warnings)


@pytest.mark.parametrize("body", [b"", b"   ", b"{}", b"not xml at all", b"\xff\xfe\x00"])
def test_garbage_is_a_feed_error(body: bytes) -> None:
    with pytest.raises(FeedError, match=r"feed 'test' \(https://x\.example/f\)"):
        parse_feed(body, source="test", url="https://x.example/f", now=NOW)


def test_bytes_that_look_like_a_path_or_url_are_never_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # feedparser.parse(b"/some/path") would read that file; we hand it a stream instead.
    secret = tmp_path / "feed.xml"
    secret.write_bytes((DATA / "thin.xml").read_bytes())
    monkeypatch.setattr(feedparser.api.http, "get", lambda *a, **k: pytest.fail("fetched"))
    for body in (str(secret).encode(), b"http://127.0.0.1:9/feed", secret.as_uri().encode()):
        with pytest.raises(FeedError):
            parse_feed(body, source="test", url="https://x.example/f", now=NOW)


# Content types and encodings ------------------------------------------------------------------
def titles(body: bytes, content_type: str | None) -> list[str]:
    """[feed title, article titles...] of ``body`` served as ``content_type``; no fallbacks."""
    feed = parse_feed(
        body, source="test", url="https://x.example/f", now=NOW, content_type=content_type
    )
    assert not [w for w in feed.warnings if "despite problems" in w], feed.warnings
    return [feed.title, *(a.title for a in feed.articles)]


def _one_item(title: str, declaration: str = '<?xml version="1.0"?>') -> str:
    return (
        f'{declaration}<rss version="2.0"><channel><title>{title}</title>'
        f"<item><title>{title}</title><link>https://x.example/a</link></item></channel></rss>"
    )


@pytest.mark.parametrize(
    "content_type",
    [None, "text/html", "text/plain", "application/octet-stream", "text/xml", "text/rss+xml"],
)
def test_a_wrong_or_missing_content_type_does_not_matter(content_type: str | None) -> None:
    # The body is UTF-8 by the XML rules; RFC 3023 made text/* without a charset US-ASCII.
    assert titles(_one_item("Crème brûlée").encode(), content_type) == ["Crème brûlée"] * 2


def test_charset_in_the_content_type_beats_the_xml_declaration() -> None:
    body = _one_item("Ёлка", '<?xml version="1.0" encoding="iso-8859-1"?>').encode("cp1251")
    assert titles(body, "application/rss+xml; charset=windows-1251") == ["Ёлка"] * 2
    assert titles(body, 'text/xml; charset="WINDOWS-1251"') == ["Ёлка"] * 2


def test_the_xml_declaration_decides_without_a_charset() -> None:
    body = _one_item("Ёлка", '<?xml version="1.0" encoding="koi8-r"?>').encode("koi8-r")
    for content_type in (None, "text/xml", "application/xml", "text/html"):
        assert titles(body, content_type) == ["Ёлка"] * 2


@pytest.mark.parametrize(
    ("encoding", "declared"),
    [
        ("utf-16", "iso-8859-1"),  # with a BOM
        ("utf-8-sig", "windows-1251"),  # with a BOM
        ("utf-16-le", "utf-8"),  # no BOM, but "<" followed by NUL
        ("utf-32-be", "utf-8"),
        ("utf-8", "utf-16"),  # no NULs: this cannot be UTF-16
    ],
)
def test_what_the_bytes_show_beats_the_content_type(encoding: str, declared: str) -> None:
    body = _one_item("Ёлка").encode(encoding)
    assert titles(body, f"application/xml; charset={declared}") == ["Ёлка"] * 2


def test_an_unknown_charset_is_ignored() -> None:
    body = _one_item("Été", '<?xml version="1.0" encoding="iso-8859-1"?>').encode("latin-1")
    assert titles(body, "application/xml; charset=x-no-such-charset") == ["Été"] * 2


def test_an_empty_feed_served_as_html_is_not_an_error() -> None:
    empty = b'<rss version="2.0"><channel><title>Quiet week</title></channel></rss>'
    assert titles(empty, "text/html; charset=utf-8") == ["Quiet week"]


def test_xml_served_as_json_is_still_xml() -> None:
    assert titles(_one_item("Plain").encode(), "application/json") == ["Plain"] * 2


# Thin feeds, images, ids ------------------------------------------------------------------------
def test_thin_feed() -> None:
    feed = parse("thin.xml")
    linked, unlinked, untitled = feed.articles
    assert (linked.title, linked.url) == (
        "Only a title and a link",
        "https://thin.example.org/posts/1",
    )
    assert linked.id == article_id(None, "https://thin.example.org/posts/1")
    assert linked.summary_html == linked.content_html == ""
    assert linked.image is None
    assert unlinked.url == "https://thin.example.org/"  # the site, for lack of anything better
    assert unlinked.id != article_id(None, "https://thin.example.org/")
    assert any("has no link" in w for w in feed.warnings)
    assert (untitled.title, untitled.url) == ("", "https://thin.example.org/posts/3")


def test_lazy_loaded_images() -> None:
    lazy, srcset = parse("lazy_image.xml").articles
    assert lazy.image is not None
    assert lazy.image.url == "https://lazy.example.org/uploads/2025/01/harbor.jpg"
    assert lazy.image.alt == "Harbor at dusk"
    assert "pixel.gif" not in lazy.content_html  # tracking pixel gone
    assert srcset.image is not None
    assert srcset.image.url == "https://cdn.lazy.example.org/a-800.jpg"
    assert "placeholder" not in srcset.summary_html


def _rss(items: str) -> bytes:
    head = '<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
    return f"{head}{items}</channel></rss>".encode()


def test_a_guid_shared_by_entries_is_not_trusted_and_duplicates_are_dropped() -> None:
    body = _rss(
        "<item><title>A</title><link>https://x.example/a</link><guid>same-guid-1</guid></item>"
        "<item><title>B</title><link>https://x.example/b</link><guid>same-guid-1</guid></item>"
        "<item><title>B again</title><link>https://x.example/b?utm_source=z</link></item>"
    )
    feed = parse_feed(body, source="test", url="https://x.example/feed", now=NOW)
    assert [a.id for a in feed.articles] == [
        article_id(None, "https://x.example/a"),
        article_id(None, "https://x.example/b"),
    ]
    assert any("duplicate of https://x.example/b" in w for w in feed.warnings)


def test_naive_now_is_taken_as_utc() -> None:
    body = _rss("<item><title>A</title><link>https://x.example/a</link></item>")
    feed = parse_feed(body, source="t", url="https://x.example/f", now=datetime(2025, 1, 1))
    assert feed.articles[0].published == datetime(2025, 1, 1, tzinfo=UTC)


def test_control_and_bidi_characters_leave_titles() -> None:
    body = _rss(
        "<item><title>Evil\u202e txt.exe \u2066x\u2069 line\u2028break\x81 \x8d</title>"
        "<link>https://x.example/a</link></item>"
    )
    title = parse_feed(body, source="t", url="https://x.example/f", now=NOW).articles[0].title
    assert title == "Evil txt.exe x linebreak"


# Properties -----------------------------------------------------------------------------------
@given(st.binary(max_size=2000))
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
def test_parse_feed_only_raises_feed_error_on_random_bytes(body: bytes) -> None:
    with contextlib.suppress(FeedError):
        parse_feed(body, source="fuzz", url="https://x.example/f", now=NOW)


_SEEDS = [(DATA / n).read_bytes() for n in ("rss2_media.xml", "atom.xml", "lazy_image.xml")]


@given(
    st.sampled_from(_SEEDS),
    st.lists(st.tuples(st.integers(0, 5000), st.binary(max_size=4)), max_size=8),
    st.integers(0, 6000),
)
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
def test_parse_feed_only_raises_feed_error_on_mutated_feeds(
    seed: bytes, edits: list[tuple[int, bytes]], cut: int
) -> None:
    body = bytearray(seed)
    for at, junk in edits:
        at %= len(body) + 1
        body[at : at + len(junk)] = junk
    try:
        feed = parse_feed(
            bytes(body[: cut or None]), source="f", url="https://x.example/f", now=NOW
        )
    except FeedError:
        return
    for a in feed.articles:
        assert a.id and a.published.tzinfo is not None and not FORBIDDEN.search(a.title)


# The project's sample feeds, when present ------------------------------------------------------
def test_sample_feeds_parse_with_captions_and_credits() -> None:
    samples = sorted([*SAMPLES.glob("*.xml"), *SAMPLES.glob("*.atom")]) if SAMPLES.is_dir() else []
    if not samples:
        pytest.skip(f"no sample feeds in {SAMPLES} yet")
    for path in samples:
        feed = parse_feed(path.read_bytes(), source=path.stem, url=path.as_uri(), now=NOW)
        assert feed.articles, path
        images = [a.image for a in feed.articles if a.image]
        assert any(i.caption and i.credit for i in images), f"{path}: no captioned image"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<rss><channel><item><title>x</ti", "no entry could be read"),
        (b"<html><body><p>Our feed moved</p></body></html>", "not a feed"),
    ],
)
def test_broken_or_html_bodies_are_feed_errors(body: bytes, reason: str) -> None:
    with pytest.raises(FeedError, match=reason):
        parse_feed(body, source="qiosk", url="https://example.org/feed", now=NOW)


def test_a_valid_empty_feed_is_not_an_error() -> None:
    empty = b'<rss version="2.0"><channel><title>Quiet week</title></channel></rss>'
    parsed = parse_feed(empty, source="qiosk", url="https://example.org/feed", now=NOW)
    assert parsed.articles == [] and parsed.title == "Quiet week"


def test_drafts_have_the_models_fields() -> None:
    # A draft becomes its model field for field (DraftFeed.parsed): a field added to one only
    # would be lost or fail there.
    from dataclasses import fields

    from digest.gather.feeds.drafts import ArticleDraft, ImageDraft
    from digest.models import Article, Image

    assert {f.name for f in fields(ArticleDraft)} == set(Article.model_fields)
    assert {f.name for f in fields(ImageDraft)} == set(Image.model_fields)


def test_a_draft_the_models_refuse_is_skipped_with_a_warning() -> None:
    # The parser never makes one; were it to, the feed keeps its other articles.
    from datetime import UTC, datetime

    from digest.gather.feeds.drafts import ArticleDraft, DraftFeed

    good = ArticleDraft(
        id="a1",
        source="s",
        url="https://example.org/a",
        title="A",
        published=datetime(2026, 11, 30, tzinfo=UTC),
    )
    bad = ArticleDraft(
        id="a2",
        source="s",
        url="https://example.org/b",
        title="B",
        published="not a date",  # type: ignore[arg-type]
    )
    parsed = DraftFeed(title="T", articles=[good, bad], warnings=["w"]).parsed()
    assert [a.id for a in parsed.articles] == ["a1"]
    assert parsed.warnings[0] == "w"
    assert len(parsed.warnings) == 2 and "https://example.org/b" in parsed.warnings[1]
