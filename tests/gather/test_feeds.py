"""Feed bytes → articles: fixtures written for these tests, hostile XML, a public corpus."""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
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
CORPUS = PROJECT.parent / "shared" / "corpora" / "feedparser-tests"
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
        ("&lt;script&gt;alert(1)&lt;/script&gt;News", "alert(1) News"),
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


# The public feedparser corpus -------------------------------------------------------------
@pytest.mark.parametrize("folder", ["wellformed", "illformed", "encoding"])
def test_corpus_parses_or_fails_cleanly(folder: str) -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"feedparser test corpus not found at {CORPUS}")
    files = sorted((CORPUS / folder).rglob("*.xml"))
    assert files, f"no feeds under {CORPUS / folder}"
    started = time.monotonic()
    parsed = 0
    for path in files:
        try:
            feed = parse_feed(
                path.read_bytes(), source="corpus", url="https://x.example/f", now=NOW
            )
        except FeedError:
            continue
        parsed += 1
        for a in feed.articles:
            assert a.id, path
            assert a.published.tzinfo is not None, path
            assert not FORBIDDEN.search(a.title), path
    assert parsed > 0
    assert time.monotonic() - started < 15


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
