"""Feed bytes → articles: fixtures written for these tests, hostile XML, a public corpus."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
import tracemalloc
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.errors import FeedError
from digest.gather.feeds import (
    ParsedFeed,
    article_id,
    canonical_url,
    clean_title,
    parse_feed,
    sanitize_html,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "feeds"
PROJECT = Path(__file__).resolve().parents[2]
SAMPLES = PROJECT / "config" / "sample"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
REFUSED = "DOCTYPE with internal subset / ENTITY declarations refused"


def parse(name: str, url: str | None = None, **kw: object) -> ParsedFeed:
    url = url or f"https://feeds.example.org/{name}"
    return parse_feed((DATA / name).read_bytes(), source="test", url=url, now=NOW, **kw)  # type: ignore[arg-type]


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
    # Pins the behaviour feeds.py adds to feedparser; an upgrade that changes it shows here.
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


# Hostile and broken XML -------------------------------------------------------------------
@pytest.mark.parametrize("name", ["billion_laughs.xml", "external_entity.xml"])
def test_entity_declarations_are_refused(name: str) -> None:
    url = f"https://feeds.example.org/{name}"
    with pytest.raises(FeedError) as info:
        parse(name, url)
    assert info.value.message == f"feed 'test' ({url}): {REFUSED}"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_entity_declarations_are_refused_in_utf16_and_utf32(encoding: str) -> None:
    text = (DATA / "billion_laughs.xml").read_text("utf-8")
    text = text.replace('<?xml version="1.0"?>', f'<?xml version="1.0" encoding="{encoding}"?>')
    with pytest.raises(FeedError, match=REFUSED):
        parse_feed(text.encode(encoding), source="test", url="https://x.example/f", now=NOW)


def test_entity_declarations_are_refused_in_utf7() -> None:
    # UTF-7 hides "<" as "+ADw-": only the decoded view that feedparser parses shows it.
    hidden = '<!DOCTYPE rss [<!ENTITY a "aaaa">]>'.replace("<", "+ADw-").replace("!", "+ACE-")
    body = (
        '<?xml version="1.0" encoding="utf-7"?>'
        + hidden
        + "<rss><channel><title>&a;</title></channel></rss>"
    ).encode("ascii")
    assert b"<!ENTITY" not in body.replace(b"\x00", b"")
    assert "<!ENTITY" in body.decode("utf-7")
    with pytest.raises(FeedError, match=REFUSED):
        parse_feed(body, source="test", url="https://x.example/f", now=NOW)


def test_entity_declarations_after_a_long_prolog_are_refused() -> None:
    body = (
        b'<?xml version="1.0"?>\n<!--' + b"x" * 100_000 + b"-->\n"
        b'<!DOCTYPE rss [<!ENTITY a "b">]><rss><channel><title>&a;</title></channel></rss>'
    )
    with pytest.raises(FeedError, match=REFUSED):
        parse_feed(body, source="test", url="https://x.example/f", now=NOW)


def refused_quickly_in_bounded_memory(body: bytes) -> None:
    """``body`` is refused before parsing: within 1 s, allocating less than 4× its size."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(FeedError, match=REFUSED):
            parse_feed(body, source="test", url="https://x.example/f", now=NOW)
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0
    assert peak < 4 * len(body) + 2_000_000


def test_billion_laughs_is_refused_quickly_in_bounded_memory() -> None:
    # Ten levels of ten: 10**10 "lol"s (30 GB) if anything expanded it.
    refused_quickly_in_bounded_memory((DATA / "billion_laughs.xml").read_bytes())


def test_quadratic_blowup_is_refused_quickly_in_bounded_memory() -> None:
    # No nesting to spot: one 100 KB entity referenced 20,000 times, 2 GB once expanded, from
    # a 180 KB document.
    body = (
        b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "' + b"x" * 100_000 + b'">]>'
        b'<rss version="2.0"><channel><title>t</title><item><title>'
        + b"&a;" * 20_000
        + b"</title><link>https://x.example/a</link></item></channel></rss>"
    )
    refused_quickly_in_bounded_memory(body)


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


# JSON Feed --------------------------------------------------------------------------------------
JSON_URL = "https://lantern.example.org/feed.json"


def parse_json(document: object, content_type: str | None = None) -> ParsedFeed:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return parse_feed(body, source="test", url=JSON_URL, now=NOW, content_type=content_type)


def test_json_feed_11_items_become_articles_like_rss_entries() -> None:
    feed = parse("jsonfeed_11.json", JSON_URL, content_type="application/feed+json")
    assert feed.title == "The Lantern Quarterly & Friends"
    assert len(feed.articles) == 3
    first = feed.articles[0]
    # The item id is the guid; relative URLs resolve against the feed; tracking params go.
    assert first.guid == "tag:lantern.example.org,2025:tidal-power"
    assert first.id == article_id(first.guid, first.url)
    assert first.url == "https://lantern.example.org/2025/02/tidal-power?page=2"
    assert first.title == "Tidal power gets a second look"  # bidi override gone
    assert first.authors == ("Ines Marlow", "Kofi Brandt")  # an author without a name is skipped
    assert first.categories == ("Energy", "Coasts")  # duplicate and non-string tags dropped
    assert first.published == datetime(2025, 2, 10, 8, 30, tzinfo=UTC)  # +01:00 → UTC
    assert first.updated == datetime(2025, 2, 11, 8, 0, tzinfo=UTC)
    assert first.summary_html == "Why the &lt;estuary&gt; matters &amp; who pays."  # plain text
    assert first.content_html == (
        "<p>Engineers return to the estuary.</p>"
        '<img src="https://lantern.example.org/img/estuary.jpg" alt="The estuary at low tide">'
    )
    assert first.image is not None
    assert (first.image.url, first.image.alt) == (
        "https://img.lantern.example.org/estuary-large.jpg",
        "Tidal power gets a second look",
    )


def test_json_feed_untitled_link_post_with_text_content() -> None:
    second = parse("jsonfeed_11.json", JSON_URL).articles[1]
    assert second.guid == "20250212"  # a numeric id is coerced to a string (and not trusted)
    assert second.id == article_id(None, "https://elsewhere.example.net/report")
    assert second.url == "https://elsewhere.example.net/report"  # external_url, lacking url
    # No title: the opening words of the text, cut at a word boundary.
    assert second.title == (
        "A report worth reading on harbour dredging, the silt it moves and the fish it…"
    )
    assert second.content_html == (
        "<p>A report worth reading on harbour dredging, the silt it moves and the fish it harms,"
        " with maps.</p><p>Second paragraph &lt;b&gt;not bold&lt;/b&gt;.<br>Same paragraph.</p>"
    )
    assert second.authors == ("Lantern Desk",)  # 1.1: the feed's authors, lacking its own
    assert second.published == datetime(2025, 2, 12, 12, 0, tzinfo=UTC)
    assert second.image is not None
    assert second.image.url == "https://img.lantern.example.org/dredging-banner.jpg"
    assert second.image.alt == second.title


def test_json_feed_attachments_undated_and_unusable_items() -> None:
    feed = parse("jsonfeed_11.json", JSON_URL)
    third = feed.articles[2]
    assert third.published == NOW
    assert third.image is not None
    assert third.image.url == "https://img.lantern.example.org/note.png"  # an image attachment
    assert any("entry 4 skipped (neither a link nor a title)" in w for w in feed.warnings)
    assert any("entry 5 skipped (not an object)" in w for w in feed.warnings)
    assert any("1 entry without a date" in w for w in feed.warnings)


def test_json_feed_10_author_and_dates() -> None:
    feed = parse("jsonfeed_10.json", JSON_URL)
    assert feed.title == "Old Harbour Log"
    ice, thaw = feed.articles
    assert ice.authors == ("Night Watch",)  # 1.0's single author object
    assert thaw.authors == ("Harbour Master",)  # inherited from the feed
    assert ice.url == ice.guid == "https://log.example.org/2025/01/ice"
    assert ice.published == datetime(2025, 1, 15, 6, 0, tzinfo=UTC)
    assert thaw.published == datetime(2025, 1, 16, 8, 0, tzinfo=UTC)  # RFC 822, tolerated
    assert thaw.content_html == "<p>It thawed.</p>"
    assert feed.warnings == []


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'  \n\t{"version": "https://jsonfeed.org/version/1.1", "items": []}', None),
        (b'\xef\xbb\xbf{"version": "https://jsonfeed.org/version/1", "items": []}', "text/html"),
        ('{"version": "https://jsonfeed.org/version/1.1", "items": []}'.encode("utf-16"), None),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": []}', "application/xml"),
    ],
)
def test_json_is_recognised_by_its_first_character(body: bytes, content_type: str | None) -> None:
    feed = parse_feed(body, source="t", url=JSON_URL, now=NOW, content_type=content_type)
    assert (feed.title, feed.articles, feed.warnings) == ("", [], [])


def test_xml_served_as_json_is_still_xml() -> None:
    assert titles(_one_item("Plain").encode(), "application/json") == ["Plain"] * 2


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": [', None, "malformed JSON"),
        (b"[1, 2]", "application/feed+json", "not a JSON Feed"),
        (b"nonsense", "application/json", "malformed JSON"),
        (b'{"title": "no version", "items": []}', None, "not a JSON Feed"),
        (b'{"version": "https://example.org/version/1", "items": []}', None, "not a JSON Feed"),
        (b'{"version": 1.1, "items": []}', None, "not a JSON Feed"),
        (b'{"version": "https://jsonfeed.org/version/1.1"}', None, "items"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": {}}', None, "items"),
        (b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", None, "nested too deeply"),
        (b'{"n": ' + b"9" * 5000 + b"}", None, "malformed JSON"),  # int longer than allowed
    ],
)
def test_bad_json_is_a_feed_error_naming_source_and_url(
    body: bytes, content_type: str | None, reason: str
) -> None:
    with pytest.raises(FeedError) as info:
        parse_feed(body, source="json", url=JSON_URL, now=NOW, content_type=content_type)
    assert info.value.message.startswith(f"feed 'json' ({JSON_URL}): ")
    assert reason in info.value.message


def test_json_feed_bad_bytes_and_lone_surrogates_do_not_cost_the_item() -> None:
    body = (
        b'{"version": "https://jsonfeed.org/version/1.1", "items": [{"id": "odd-bytes-1", '
        b'"url": "https://x.example/a", "title": "Bad \xff byte \\ud800 here", '
        b'"content_html": "<p>half \\udc00 a pair</p>"}]}'
    )
    feed = parse_json(body)
    (article,) = feed.articles
    assert article.title == "Bad \ufffd byte \ufffd here"
    assert article.content_html == "<p>half \ufffd a pair</p>"
    assert any("not valid utf-8" in w for w in feed.warnings)


def test_json_feed_legacy_charset_from_the_content_type() -> None:
    body = '{"version": "https://jsonfeed.org/version/1", "title": "Été", "items": []}'
    feed = parse_json(body.encode("latin-1"), "application/json; charset=iso-8859-1")
    assert (feed.title, feed.warnings) == ("Été", [])


def test_json_untitled_item_title_never_splits_a_grapheme() -> None:
    # No spaces: cut at the limit, moved back before "q" and its accent (no precomposed form).
    text = "漢" * 79 + "q\u0301" + "字" * 30
    feed = parse_json(
        {
            "version": "https://jsonfeed.org/version/1.1",
            "items": [{"id": "cjk-item-1", "url": "https://x.example/c", "content_text": text}],
        }
    )
    assert feed.articles[0].title == "漢" * 79 + "…"


def test_json_untitled_item_ignores_script_text() -> None:
    html_only = "<script>alert('x')</script><p>Real words</p>"
    feed = parse_json(
        {
            "version": "https://jsonfeed.org/version/1.1",
            "items": [
                {"id": "html-item-1", "url": "https://x.example/h", "content_html": html_only}
            ],
        }
    )
    assert feed.articles[0].title == "Real words"


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


@pytest.mark.parametrize(
    ("guid", "trusted"),
    [
        ("tag:x.example,2025:1", True),
        ("https://x.example/?p=12", True),
        ("0d4f1c6e-7c1a-4a8e-9a61-1d1f3e0b8f6e", True),
        ("", False),
        ("   ", False),
        ("null", False),
        ("1234", False),  # a per-feed counter
        ("abc", False),
        ("https://x.example/", False),  # the home page
        (None, False),
    ],
)
def test_article_id_trusts_only_meaningful_guids(guid: str | None, trusted: bool) -> None:
    canonical = "https://x.example/post"
    by_url = "a" + hashlib.sha256(canonical.encode()).hexdigest()[:20]
    ident = article_id(guid, canonical)
    assert re.fullmatch(r"a[0-9a-f]{20}", ident)
    assert (ident != by_url) is trusted


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTPS://News.Example.ORG/a/b?x=1#top", "https://news.example.org/a/b?x=1"),
        (
            "https://x.example/p?utm_source=a&id=3&UTM_Medium=b&fbclid=c&gclid=d&b=2",
            "https://x.example/p?id=3&b=2",
        ),
        (
            "https://x.example/p?mc_cid=1&mc_eid=2&ref_src=3&_hsenc=4&_hsmi=5&igshid=6",
            "https://x.example/p",
        ),
        ("https://x.example:443/p", "https://x.example/p"),
        ("http://x.example:8080/p", "http://x.example:8080/p"),
        ("https://user:pw@x.example/p", "https://x.example/p"),
        ("https://x.example", "https://x.example/"),
        ("https://[2001:DB8::1]:443/p", "https://[2001:db8::1]/p"),
        ("https://x.example/a%20b?q=a%2Bb", "https://x.example/a%20b?q=a%2Bb"),  # verbatim
    ],
)
def test_canonical_url(url: str, expected: str) -> None:
    assert canonical_url(url) == expected
    assert canonical_url(expected) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Hello\n\t <b>world</b>  ", "Hello world"),
        ("AT&amp;T &amp;amp; friends", "AT&T & friends"),
        ("&lt;script&gt;alert(1)&lt;/script&gt;News", "News"),  # script text is not a title
        ("safe<script type='x'>location.href='/'</script > description", "safe description"),
        ("<style>p{}</style>A<!-- note -->B<!DOCTYPE html>C<?php x ?>D", "A B C D"),
        ("safe&lt;!-- an unclosed comment runs to the end", "safe"),
        ("unclosed <script>alert(1)", "unclosed"),
        ("Cafe\u0301", "Café"),
        ("a < b > c", "a < b > c"),
        ("\x00\x1b[31mred\x9b", "[31mred"),
    ],
)
def test_clean_title(raw: str, expected: str) -> None:
    assert clean_title(raw) == expected


def test_sanitize_html_allow_list() -> None:
    html = (
        '<div class="x"><h1>Big</h1><h2 style="color:red">Sub</h2>'
        '<p>A <a href="/rel" title="t" target="_blank">link</a>, '
        '<a href="mailto:e@x.example">mail</a>, <a href="data:text/html,x">data</a>'
        '<img src="//cdn.example/i.png" onerror="x()"></p><table><tr><td>cell</td></tr></table>'
        "<style>p{}</style><!-- c --></div>"
    )
    assert sanitize_html(html, "https://x.example/post/") == (
        'Big<h2>Sub</h2><p>A <a href="https://x.example/rel" title="t" rel="noopener noreferrer">'
        'link</a>, <a href="mailto:e@x.example" rel="noopener noreferrer">mail</a>, '
        '<a rel="noopener noreferrer">data</a><img src="https://cdn.example/i.png"></p>cell'
    )


def test_sanitize_html_drops_relative_urls_without_an_http_base() -> None:
    assert sanitize_html('<a href="/x">x</a>', "file:///feeds/a.xml") == (
        '<a rel="noopener noreferrer">x</a>'
    )
    assert sanitize_html("", None) == ""


# Properties -----------------------------------------------------------------------------------
@given(st.text())
@settings(max_examples=300)
def test_clean_title_properties(text: str) -> None:
    cleaned = clean_title(text)
    assert clean_title(cleaned) == cleaned
    assert not FORBIDDEN.search(cleaned)
    assert unicodedata.is_normalized("NFC", cleaned)
    assert cleaned == cleaned.strip()


_PART = st.text(alphabet="abcXYZ019-._~%+=&;:@!$'()*", max_size=8)
_URLS = st.builds(
    lambda scheme, host, port, path, query, frag: (
        f"{scheme}://{host}{port}/{path}" + (f"?{query}" if query else "") + frag
    ),
    st.sampled_from(["http", "https", "HTTP", "Https"]),
    st.from_regex(r"[A-Za-z0-9]{1,10}(\.[A-Za-z]{2,5}){1,2}", fullmatch=True),
    st.sampled_from(["", ":80", ":443", ":8080"]),
    _PART,
    st.lists(
        st.tuples(
            st.sampled_from(["utm_source", "UTM_campaign", "fbclid", "id", "page", "x", ""]),
            _PART,
        ),
        max_size=5,
    ).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)),
    st.sampled_from(["", "#frag", "#"]),
)


@given(_URLS)
def test_canonical_url_properties(url: str) -> None:
    canonical = canonical_url(url)
    assert canonical_url(canonical) == canonical
    assert "utm_" not in canonical.split("?", 1)[-1].lower() or "?" not in canonical
    assert "#" not in canonical


@given(st.binary(max_size=2000))
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
def test_parse_feed_only_raises_feed_error_on_random_bytes(body: bytes) -> None:
    with contextlib.suppress(FeedError):
        parse_feed(body, source="fuzz", url="https://x.example/f", now=NOW)


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
_ITEM_FIELDS = st.sampled_from(
    ["id", "url", "external_url", "title", "content_html", "content_text", "summary", "image",
     "banner_image", "date_published", "date_modified", "author", "authors", "tags",
     "attachments"]
)  # fmt: skip


@given(
    st.dictionaries(st.sampled_from(["title", "home_page_url", "author", "authors"]), _JSON_VALUES),
    st.lists(st.dictionaries(_ITEM_FIELDS, _JSON_VALUES | st.text(max_size=40)), max_size=4),
)
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
def test_json_feed_of_any_shape_gives_articles_or_feed_error(
    top: dict[str, object], items: list[dict[str, object]]
) -> None:
    document = {**top, "version": "https://jsonfeed.org/version/1.1", "items": items}
    try:
        feed = parse_json(json.dumps(document).encode())
    except FeedError:
        return
    for a in feed.articles:
        assert a.id and a.published.tzinfo is not None and not FORBIDDEN.search(a.title)


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
